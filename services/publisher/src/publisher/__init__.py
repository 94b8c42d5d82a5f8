"""Publisher: publishes content to WordPress without ever duplicating a post or a media item."""
