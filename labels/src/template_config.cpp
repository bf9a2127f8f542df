#include "labels/template_config.hpp"

#include "common/error.hpp"
#include "internal/toml_reader.hpp"

namespace station::labels {
namespace {

using internal::fail;
using internal::Reader;

Ecc parse_ecc(const std::string& key, const std::string& v) {
  if (v == "L") return Ecc::L;
  if (v == "M") return Ecc::M;
  if (v == "Q") return Ecc::Q;
  if (v == "H") return Ecc::H;
  fail(key, "'" + v + "' is not an ECC level; use \"L\", \"M\", \"Q\" or \"H\"");
}

TextField parse_field(const std::string& key, const std::string& v) {
  for (TextField f : {TextField::serial, TextField::mac, TextField::model, TextField::date, TextField::batch,
                      TextField::fixture, TextField::text}) {
    if (v == to_string(f)) return f;
  }
  fail(key, "'" + v + "' is not a field; use serial, mac, model, date, batch, fixture or text");
}

const toml::table& sub_table(Reader& r, std::string_view k) {
  const toml::node* n = r.get(k);
  const toml::table* t = n != nullptr ? n->as_table() : nullptr;
  if (t == nullptr) fail(r.key(k), "expected a table");
  return *t;
}

}  // namespace

TemplateSpec template_spec_from_toml(const toml::table& table, const std::string& name, const std::string& where) {
  TemplateSpec s;  // unset keys keep the defaults of TemplateSpec (the built-in default's size)
  s.name = name;
  Reader r(table, where);
  r.string("name", s.name);
  r.number("width_mm", s.width_mm);
  r.number("height_mm", s.height_mm);
  r.integer("dpi", s.dpi);
  r.string("font", s.font);
  if (r.has("qr")) {
    Reader q(sub_table(r, "qr"), r.key("qr"));
    q.number("x_mm", s.qr.x_mm);
    q.number("y_mm", s.qr.y_mm);
    q.number("size_mm", s.qr.size_mm);
    q.integer("max_data_bytes", s.qr.max_data_bytes);
    std::string ecc(to_string(s.qr.ecc));
    q.string("ecc", ecc);
    s.qr.ecc = parse_ecc(q.key("ecc"), ecc);
    q.no_unknown_keys();
  }
  if (const toml::node* n = r.get("text")) {
    const toml::array* arr = n->as_array();
    if (arr == nullptr) fail(r.key("text"), "expected an array of tables ([[text]])");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const std::string k = r.key("text") + "[" + std::to_string(i) + "]";
      const toml::table* t = (*arr)[i].as_table();
      if (t == nullptr) fail(k, "expected a table");
      Reader tr(*t, k);
      TextSpec ts;
      if (!tr.has("field")) fail(tr.key("field"), "missing");
      std::string field;
      tr.string("field", field);
      ts.field = parse_field(tr.key("field"), field);
      tr.number("x_mm", ts.x_mm);
      tr.number("y_mm", ts.y_mm);
      tr.number("height_mm", ts.height_mm);
      tr.integer("max_chars", ts.max_chars);
      tr.string("prefix", ts.prefix);
      tr.string("value", ts.value);
      tr.no_unknown_keys();
      s.texts.push_back(std::move(ts));
    }
  }
  if (r.has("second_code")) {
    Reader c(sub_table(r, "second_code"), r.key("second_code"));
    SecondCodeSpec sc;
    if (!c.has("kind")) fail(c.key("kind"), "missing (wifi_qr or datamatrix)");
    std::string kind;
    c.string("kind", kind);
    if (kind == "wifi_qr") sc.kind = SecondCodeKind::wifi_qr;
    else if (kind == "datamatrix") sc.kind = SecondCodeKind::datamatrix;
    else fail(c.key("kind"), "'" + kind + "' is not a second code; use wifi_qr or datamatrix");
    c.number("x_mm", sc.x_mm);
    c.number("y_mm", sc.y_mm);
    c.number("size_mm", sc.size_mm);
    c.integer("max_data_bytes", sc.max_data_bytes);
    std::string ecc(to_string(sc.ecc));
    c.string("ecc", ecc);
    sc.ecc = parse_ecc(c.key("ecc"), ecc);
    c.no_unknown_keys();
    s.second_code = sc;
  }
  r.no_unknown_keys();
  return s;
}

Template template_from_toml(const toml::table& table, const std::string& name, const std::string& where) {
  return Template(template_spec_from_toml(table, name, where));
}

std::map<std::string, Template> templates_from_toml(const toml::table& templates, const std::string& where) {
  std::map<std::string, Template> out;
  for (auto&& [k, v] : templates) {
    const std::string name(k.str());
    const std::string key = where + "." + name;
    const toml::table* t = v.as_table();
    if (t == nullptr) fail(key, "expected a table ([" + key + "])");
    TemplateSpec spec = template_spec_from_toml(*t, name, key);
    if (spec.name != name) fail(key + ".name", "must match the table's name '" + name + "' (or be left out)");
    out.emplace(name, Template(std::move(spec)));
  }
  return out;
}

std::map<std::string, Template> load_template_file(const std::filesystem::path& path) {
  toml::table doc;
  try {
    doc = toml::parse_file(path.string());
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw Error(Errc::config_error, path.string() + ":" + std::to_string(src.begin.line) + ":" +
                                        std::to_string(src.begin.column) + ": " + std::string(e.description()));
  }
  if (const toml::node* n = doc.get("templates")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) fail(path.string() + ": templates", "expected a table");
    if (doc.size() != 1) {
      for (auto&& [k, v] : doc) {
        if (k.str() != "templates") fail(path.string() + ": " + std::string(k.str()), "unknown key beside [templates]");
      }
    }
    return templates_from_toml(*t, "templates");
  }
  std::map<std::string, Template> out;
  Template tpl = template_from_toml(doc, path.stem().string(), "");
  out.emplace(tpl.name(), std::move(tpl));
  return out;
}

}  // namespace station::labels
