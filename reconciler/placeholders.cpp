#include "reconciler/placeholders.hpp"

#include <map>

#include <fmt/format.h>

#include "core/config.hpp"
#include "core/pg.hpp"

namespace ingestd::reconciler {

PlaceholderReport open_placeholders(pg::Connection& conn, const config::Config& cfg,
                                    const std::string& only_entity, std::int64_t limit) {
  PlaceholderReport report;
  for (const config::Entity* e : cfg.reconciled_in_order()) {
    if (!only_entity.empty() && e->name != only_entity) continue;
    std::string table = pg::Identifier(e->table.name).quoted();
    report.open_per_entity.emplace_back(
        e->name, conn.query(fmt::format("SELECT count(*) FROM {} WHERE is_placeholder", table))
                     .get_int(0, 0));
    auto rows = conn.query(
        fmt::format("SELECT id, created_at FROM {} WHERE is_placeholder ORDER BY created_at, id "
                    "LIMIT $1",
                    table),
        limit);
    if (rows.rows() == 0) continue;
    std::vector<pg::Param> ids;
    std::map<std::string, std::size_t> index;
    for (int i = 0; i < rows.rows(); ++i) {
      index.emplace(std::string(rows.get(i, 0)), report.rows.size());
      report.rows.push_back(
          {e->name, std::string(rows.get(i, 0)), std::string(rows.get(i, 1)), {}});
      ids.push_back(std::string(rows.get(i, 0)));
    }
    std::string list = pg::array_literal(ids);
    for (const auto& child : cfg.entities) {
      if (child.table.name.empty()) continue;
      for (const auto& col : child.table.columns) {
        if (col.references != e->name) continue;
        auto refs = conn.query(
            fmt::format("SELECT {0}, count(*), min(id) FROM {1} WHERE {0} = ANY($1::text[]) "
                        "GROUP BY {0}",
                        pg::Identifier(col.name).quoted(),
                        pg::Identifier(child.table.name).quoted()),
            list);
        for (int i = 0; i < refs.rows(); ++i) {
          auto it = index.find(std::string(refs.get(i, 0)));
          if (it == index.end()) continue;
          report.rows[it->second].referenced_by.push_back(
              {child.table.name + "." + col.name, refs.get_int(i, 1), std::string(refs.get(i, 2))});
        }
      }
    }
  }
  return report;
}

}  // namespace ingestd::reconciler
