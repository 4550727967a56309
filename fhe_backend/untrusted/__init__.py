"""The trust boundary: everything that reads bytes a hostile party wrote before anything trusts
them. Only modules here open a package's zips, parse MLIR, decode ``configuration.json`` or
check evaluation keys (``tests/test_package.py`` keeps it so); native work on those bytes runs in
the sandbox's child process.

    safezip.py        zip checks before anything is extracted (paths, links, members, sizes)
    mlir_policy.py    the operation allow-list every package circuit passes: one function, or
                      exactly the functions of a registered module
    composition.py    the registry of modules (the sealed total: count, add, noise) and their
                      wiring; the composition rules every compile of one uses, never the zip's
    configuration.py  ``configuration.json`` decoded without running its code
    circuit.py        ``server.zip``'s MLIR to a Concrete circuit; evaluation keys loaded
    keyset.py         crypto parameters; evaluation keys read (size first) and checked against
                      the circuit's keyset; the circuit's key and ciphertext sizes, bounded
    processing.py     ``client.zip`` read as data: quantizers and the auditor's client specs
    evaluation.py     one ciphertext through a compiled circuit (a named function of a module,
                      with its clear argument), with one-sentence errors
    sandbox.py        the child processes that compile and evaluate untrusted circuits
"""
