#include "fastpool/buffer_pool.hpp"

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastpool {
namespace {

constexpr std::size_t kHuge = std::size_t(2) << 20;
constexpr std::size_t kMaxCachedBytes = std::size_t(1) << 30;
constexpr std::size_t kMaxCachedBuffers = 16;

struct Cached {
  void* p;
  std::size_t bytes;
};

struct Pool {
  std::mutex mutex;
  std::vector<Cached> free;  // most recently released last
  std::size_t cached = 0;

  std::size_t trim() {
    std::size_t n = 0;
    for (const Cached& c : free) {
      std::free(c.p);
      n += c.bytes;
    }
    free.clear();
    cached = 0;
    return n;
  }
};

// Never destroyed: arrays released during interpreter shutdown may still return
// their buffers after static destructors would have run.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

std::size_t rounded(std::size_t bytes) {
  const std::size_t align = bytes >= kHuge ? kHuge : 64;
  return (bytes + align - 1) / align * align;
}

}  // namespace

void* acquire_buffer(std::size_t bytes) {
  const std::size_t size = rounded(bytes ? bytes : 1);
  {
    Pool& pl = pool();
    std::lock_guard<std::mutex> lock(pl.mutex);
    for (std::size_t i = pl.free.size(); i-- > 0;)
      if (pl.free[i].bytes == size) {
        void* p = pl.free[i].p;
        pl.cached -= size;
        pl.free.erase(pl.free.begin() + std::ptrdiff_t(i));
        return p;
      }
  }
  void* p = std::aligned_alloc(size >= kHuge ? kHuge : 64, size);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (size >= kHuge) madvise(p, size, MADV_HUGEPAGE);
#endif
  return p;
}

void release_buffer(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  const std::size_t size = rounded(bytes ? bytes : 1);
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mutex);
  if (size > kMaxCachedBytes) {
    std::free(p);
    return;
  }
  // Evict the oldest until the new one fits.
  while (!pl.free.empty() && (pl.cached + size > kMaxCachedBytes || pl.free.size() >= kMaxCachedBuffers)) {
    std::free(pl.free.front().p);
    pl.cached -= pl.free.front().bytes;
    pl.free.erase(pl.free.begin());
  }
  try {
    pl.free.push_back({p, size});
    pl.cached += size;
  } catch (...) {
    std::free(p);
  }
}

std::size_t trim_buffers() noexcept {
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mutex);
  return pl.trim();
}

std::size_t cached_buffer_bytes() noexcept {
  Pool& pl = pool();
  std::lock_guard<std::mutex> lock(pl.mutex);
  return pl.cached;
}

}  // namespace fastpool
