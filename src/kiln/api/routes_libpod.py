"""placeholder"""

routes: list = []
