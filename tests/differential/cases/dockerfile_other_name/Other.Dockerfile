FROM busybox
RUN echo other > /other
