// The checks every renderer makes on a label's data before drawing anything, and the values
// the text lines show. One place, so ZPL and the previews refuse exactly the same inputs.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "labels/label.hpp"
#include "labels/template.hpp"

namespace station::labels::internal {

// Throws Error(invalid_argument) when the URI is empty or longer than qr.max_data_bytes.
void check_qr_data(const Template& tpl, std::string_view uri);

// The value text line i shows (empty: the line is left out). `scratch` holds a formatted MAC.
// Throws Error(invalid_argument) when it is not printable UTF-8, longer than max_chars, or a
// MAC that is not 12 hex digits.
std::string_view text_value(const Template& tpl, std::size_t i, const LabelData& data,
                            std::array<char, 17>& scratch);

// The second code's data (WIFI: payload or the serial); throws when it is missing or too long.
std::string second_code_data(const Template& tpl, const LabelData& data);

}  // namespace station::labels::internal
