"""The model owner: compile a model and publish its package.

    package.py    compile a model, write its package (reproducible zips, the sealed circuit)
    importer.py   a package from an existing Concrete ML deployment (client.zip + server.zip)
    zoo_build.py  rebuilds the embedded zoo (``make assets``)
"""

from .._lazy import attach

__all__ = ["import_model", "package_model"]
__getattr__ = attach(__name__, {"package_model": "package", "import_model": "importer"})
