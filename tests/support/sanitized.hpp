// Whether this test binary (and so the shoal it runs, built alongside) has AddressSanitizer.
#pragma once

namespace shoal::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
inline constexpr bool kSanitized = __has_feature(address_sanitizer);
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace shoal::test
