// Reusable output buffers. A fresh large array pays a page fault per page on first
// touch, which can cost more than the pooling itself; released buffers are kept
// (up to a cap) and handed out again for the next request of the same size.
#pragma once

#include <cstddef>

namespace fastpool {

/// A buffer of at least `bytes` bytes, 64-byte aligned (2 MiB aligned and advised
/// for transparent huge pages when large). Throws std::bad_alloc.
void* acquire_buffer(std::size_t bytes);

/// Returns a buffer from acquire_buffer(bytes); it is cached or freed.
void release_buffer(void* p, std::size_t bytes) noexcept;

/// Frees every cached buffer; returns the bytes freed.
std::size_t trim_buffers() noexcept;

/// Bytes currently cached.
std::size_t cached_buffer_bytes() noexcept;

}  // namespace fastpool
