"""The original's package path; its one module is cortex.kernel_features.kv_cache_manager."""
