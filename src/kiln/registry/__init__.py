"""Distribution-spec client: challenges, Basic/Bearer auth, credentials, registries.conf, retries, uploads. The only user of httpx. Must not import store, image or above."""
