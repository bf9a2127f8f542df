#pragma once

#include <string>
#include <vector>

namespace station::db {

// migrations[v] takes the schema from version v to v+1. Append only; never edit a step
// that has shipped.
const std::vector<std::string>& schema_migrations();

}  // namespace station::db
