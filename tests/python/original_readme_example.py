from cortex.kernel_features.kv_cache_manager import (
    KVCacheManager,
    CacheConfig,
)

# Create manager
manager = KVCacheManager()

# Create pool
config = CacheConfig(
    name="my-cache",
    size_bytes=16 * 1024**3,  # 16GB
    policy="lru",
    max_sequences=10000
)
manager.create_pool(config)

# Store KV-cache data
sequence_id = 42
kv_data = b"..."  # Your KV-cache tensor bytes
token_count = 128
prefix_tokens = [1, 2, 3, 4, 5]  # Optional prefix for matching

manager.put("my-cache", sequence_id, kv_data, token_count,
            prefix_tokens=prefix_tokens, priority=10)

# Retrieve data
data = manager.get("my-cache", sequence_id)

# Find by prefix
matches = manager.get_by_prefix("my-cache", prefix_tokens)
for entry, data in matches:
    print(f"Sequence {entry.sequence_id}: {len(data)} bytes")

# Persist and restore
manager.persist("my-cache")
manager.restore("my-cache")

# Cleanup
manager.destroy_pool("my-cache")
