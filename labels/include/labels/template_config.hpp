// Templates from configuration (TOML, via toml++). The station's config loader hands over
// its `[templates]` table (one sub-table per template name); a template can also live in its
// own file. Keys (all optional except where noted; lengths in mm):
//
//   width_mm, height_mm, dpi (203|300|600), font
//   [qr]           x_mm, y_mm, size_mm, max_data_bytes, ecc ("L"|"M"|"Q"|"H")
//   [[text]]       field (required: serial|mac|model|date|batch|fixture|text), x_mm, y_mm,
//                  height_mm, max_chars, prefix, value (field = "text" only)
//   [second_code]  kind (required: wifi_qr|datamatrix), x_mm, y_mm, size_mm, max_data_bytes, ecc
//
// Unknown keys and wrong types are refused with the key's full name (e.g.
// "templates.acme.text[2].max_chars: expected an integer"), as Error(Errc::config_error);
// then the layout is validated (see Template).
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <toml++/toml.h>

#include "labels/template.hpp"

namespace station::labels {

// One template from its table; `where` prefixes key names in errors (e.g. "templates.acme").
TemplateSpec template_spec_from_toml(const toml::table& table, const std::string& name,
                                     const std::string& where);
Template template_from_toml(const toml::table& table, const std::string& name, const std::string& where);

// Every template of a `[templates]` section, by name.
std::map<std::string, Template> templates_from_toml(const toml::table& templates,
                                                    const std::string& where = "templates");

// A template file: either one template at top level (named after the file's stem unless it
// has `name = "..."`), or a `[templates.NAME]` collection.
std::map<std::string, Template> load_template_file(const std::filesystem::path& path);

}  // namespace station::labels
