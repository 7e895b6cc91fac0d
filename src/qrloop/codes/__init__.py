"""Pure code primitives: the v1 code format, the key ring and QR rendering."""
