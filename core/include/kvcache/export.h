// KVCACHE_EXPORT marks what libkvcache.so exports. The library is built with
// -fvisibility=hidden, so only the public API (these headers) is in its dynamic symbol
// table: engines link against a stable surface and internals can change freely.
#pragma once

#define KVCACHE_EXPORT [[gnu::visibility("default")]]
