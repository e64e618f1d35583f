"""One import point for every *closed-form cost* of the course (FLOPs, bytes, sequence lengths).

Each formula lives in the module of its concept; this module only re-exports them, so that
chapters can write ``from utils.complexity import attention_flops, attention_weights_bytes``.
"""
