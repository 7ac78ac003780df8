"""Imports every pass module so that each registers itself with the pass manager."""

import importlib
import pkgutil

import ir.passes as _package

for _module in pkgutil.iter_modules(_package.__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"ir.passes.{_module.name}")
