# The real-WordPress fixtures, until the project's pytest plugin (writer_images.testing.plugin) provides them.
# (`pytest_plugins` is only honoured in the rootdir conftest, hence the import.)
from writer_images.testing.wordpress_fixtures import wordpress_factory, wordpress_site

__all__ = ["wordpress_factory", "wordpress_site"]
