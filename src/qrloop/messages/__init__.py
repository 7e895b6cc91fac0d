"""Messages to consumers (one-time codes, their links) by email or SMS, through an outbox."""
