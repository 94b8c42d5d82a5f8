"""Writer Images shared package: event contracts, envelope, outbox/inbox, settings, logging, harness."""
