"""How every artifact is proven against PyTorch: the references and their inputs (``references``, ``photos``,
``sample_inputs``), the comparison and its report (``parity``), the widen-until-parity loop of the reduced
precisions (``widening``) and the BF16 floor (``bf16_floor``). Like the formats, checks import none of the
pipeline modules (``cli``, ``pipeline``, ``stages``, ``context``, ``options``)."""
