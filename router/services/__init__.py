"""Access-link and DHCP services, pure: frames in, frames and actions out (seed 4, 5.2-5.4)."""
