// Small text helpers shared by template validation and the renderers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace station::labels::internal {

// Number of code points, or nullopt when `s` is not valid UTF-8 (or holds control characters,
// which no label line may carry).
std::optional<std::size_t> printable_utf8_length(std::string_view s);

// The character cell of the monospaced metric both ZPL (font 0, ^A0N,h,w) and the previews use:
// width = ceil(0.62 * height). DejaVu Sans Mono advances 0.602 em, so previews never exceed it.
int char_width_for_height(int height_dots);

std::string format_mm(double mm);

}  // namespace station::labels::internal
