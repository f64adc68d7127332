"""Image/Layer/Index model over any blob source; copy between sources and sinks; transports (oci layout, archives); unpack; validate. Must not import container, build, ops, cli, api."""
