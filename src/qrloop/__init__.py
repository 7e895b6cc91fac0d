"""qrloop: signed single-use QR codes, verified at the till in one Redis round trip."""
