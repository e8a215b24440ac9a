"""The only code that touches file descriptors, sockets, netlink, files and clocks."""
