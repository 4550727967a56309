"""The public artifact formats and their primitives: a leaf layer that imports no role.

    artifacts.py  the versioned formats: model package, encrypted benchmark, run (manifests)
    layers.py     published hidden layers: the package seen through one layer's circuit
    pages.py      the uncompressed size Parquet page headers declare, read without decompressing
    schema.py     input schema and preprocessing, declared as data
    bundle.py     several ciphertexts carried as one sample (sealed batches)
    hashing.py    SHA-256 helpers and content hashes
    atomic.py     atomic writes (the only writer of temporary files)
    progress.py   the progress callback type
"""
