"""Where a model comes from: MODEL on the command line → a built ``nn.Module`` and what its source knows of
its inputs and preprocessing.

- ``model_source``: the dispatcher (zoo and plugin names, ``file.py:callable``, ``package.module:callable``);
- ``model_hubs``: ``timm:NAME`` and ``torchvision:NAME``;
- ``zoo_table``: the ``attn-export --list`` table of every registered name.

A new source is one builder in ``model_hubs`` (or a module beside it) plus one branch of
``model_source.build_source`` (CONTRIBUTING.md, "Add a model source"). Sources import none of the pipeline
modules (``cli``, ``pipeline``, ``stages``, ``context``, ``options``): tests/test_layering.py checks it.
"""
