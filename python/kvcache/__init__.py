"""kvcache: KV-cache bytes in pools of shared memory, shared by every process on the machine.

    import kvcache, numpy
    m = kvcache.Manager()                       # $CORTEX_HOME, else ~/.cortex
    m.create_pool("llama", "1G")
    m.put("llama", 42, numpy.zeros(1024, numpy.float16), token_count=128,
          prefix_tokens=[1, 2, 3])              # any contiguous buffer, copied once
    with m.view("llama", 42) as mv:             # read-only, zero copy, pinned
        a = numpy.frombuffer(mv, numpy.float16)
    with m.reserve("llama", 43, 4096) as mv:    # write in place; commits on exit
        mv[:] = b"\\0" * 4096

The same pools are used by `cortex cache ...` and the kvcachefs mount. The original's
API is cortex.kernel_features.kv_cache_manager.
"""

from kvcache.errors import (AlreadyExists, Busy, Corruption, Error, InvalidArgument,
                            IOError, NoSpace, NotFound, NotSupported, PermissionDenied,
                            PoolFull)
from kvcache._native import (EntryInfo, HealthReport, Manager, PoolStats, Reservation, View,
                             format_size, parse_size, prefix_hash)

__all__ = [
    "AlreadyExists", "Busy", "Corruption", "Error", "InvalidArgument", "IOError", "NoSpace",
    "NotFound", "NotSupported", "PermissionDenied", "PoolFull", "EntryInfo", "HealthReport",
    "Manager", "PoolStats", "Reservation", "View", "format_size", "parse_size",
    "prefix_hash",
]
