// BOKBOK_API marks what libbokbok exports: the public classes (their members, vtables and
// typeinfo, so the error types thrown out of the library are caught by type) and the
// public free functions. The library is built with hidden visibility, so everything not
// marked, the internal layers included, stays inside libbokbok.so.
#pragma once

// BOKBOK_HIDDEN keeps a type declared inside an exported class (server::impl) internal.
#if defined(__GNUC__)
#define BOKBOK_API __attribute__((visibility("default")))
#define BOKBOK_HIDDEN __attribute__((visibility("hidden")))
#else
#define BOKBOK_API
#define BOKBOK_HIDDEN
#endif
