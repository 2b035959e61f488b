#include "shoal/size.hpp"

#include <gtest/gtest.h>

namespace shoal {
namespace {

TEST(ParseSize, SuffixesAreBinaryUnits) {
  EXPECT_EQ(parse_size("4K", MiB).value(), 4 * KiB);
  EXPECT_EQ(parse_size("512M", MiB).value(), 512 * MiB);
  EXPECT_EQ(parse_size("64G", MiB).value(), 64 * GiB);
  EXPECT_EQ(parse_size("1T", MiB).value(), TiB);
  EXPECT_EQ(parse_size("2GiB", MiB).value(), 2 * GiB);
  EXPECT_EQ(parse_size("3mb", MiB).value(), 3 * MiB);
  EXPECT_EQ(parse_size("4096B", MiB).value(), 4096u);
}

TEST(ParseSize, BareNumberUsesTheDefaultUnit) {
  EXPECT_EQ(parse_size("256", MiB).value(), 256 * MiB);
  EXPECT_EQ(parse_size("0", MiB).value(), 0u);
}

TEST(ParseSize, RejectsUnknownSuffixNamingIt) {
  auto r = parse_size("12Q", MiB);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("'Q'"), std::string::npos) << r.error().message();
}

TEST(ParseSize, RejectsGarbageAndOverflow) {
  EXPECT_FALSE(parse_size("", MiB).ok());
  EXPECT_FALSE(parse_size("M", MiB).ok());
  EXPECT_FALSE(parse_size("-1G", MiB).ok());
  EXPECT_FALSE(parse_size("99999999999999999999", MiB).ok());
  auto r = parse_size("20000000T", MiB);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("too large"), std::string::npos);
}

TEST(FormatSize, PicksTheLargestExactUnit) {
  EXPECT_EQ(format_size(GiB), "1 GiB");
  EXPECT_EQ(format_size(1536 * MiB), "1536 MiB");
  EXPECT_EQ(format_size(TiB), "1 TiB");
  EXPECT_EQ(format_size(4097), "4097 B");
}

}  // namespace
}  // namespace shoal
