// Users, roles and tokens through the real binary: the first officer, officers making
// users, tokens stored only as Argon2id hashes, denials journaled.
#include <gtest/gtest.h>

#include "officers.hpp"

namespace station::test {
namespace {

TEST(UserAdd, TheFirstOfficerNeedsNoTokenFurtherUsersNeedAnOfficersToken) {
  StationDir st;
  auto add = [&](const std::string& role, const std::string& name, const std::string& token_file,
                 const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> argv = {station_bin(), "user", "add", "--data", st.data().string(), "--role", role,
                                     "--name", name};
    if (!token_file.empty()) argv.insert(argv.end(), {"--token-file", token_file});
    return run(argv, env);
  };
  const auto alice = add("officer", "alice", "");
  ASSERT_EQ(alice.exit_code, 0) << alice.err;
  const std::string token = alice.out.substr(0, alice.out.size() - 1);
  EXPECT_EQ(token.rfind("alice.", 0), 0u) << token;
  EXPECT_EQ(token.size(), 6u + 64u);
  write_file(st.file("alice.token"), alice.out);

  // Now that an officer exists, holding the folder is not enough.
  const auto nobody = add("officer", "mallory", "");
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find("--token-file"), std::string::npos) << nobody.err;
  // A forged token (right name, wrong secret) is refused and journaled.
  write_file(st.file("forged.token"), "alice." + std::string(64, 'a') + "\n");
  const auto forged = add("officer", "mallory", st.file("forged.token").string());
  EXPECT_EQ(forged.exit_code, 1);
  EXPECT_NE(forged.err.find("not valid"), std::string::npos) << forged.err;

  const auto olga = add("operator", "olga", st.file("alice.token").string());
  ASSERT_EQ(olga.exit_code, 0) << olga.err;
  write_file(st.file("olga.token"), olga.out);
  // An operator cannot make users; STATION_TOKEN works like --token-file.
  const auto by_operator = add("officer", "mallory", "", {{"STATION_TOKEN", olga.out.substr(0, olga.out.size() - 1)}});
  EXPECT_EQ(by_operator.exit_code, 1);
  EXPECT_NE(by_operator.err.find("needs the officer role"), std::string::npos) << by_operator.err;
  const auto bob = add("officer", "bob", "", {{"STATION_TOKEN", token}});
  EXPECT_EQ(bob.exit_code, 0) << bob.err;
  EXPECT_EQ(add("auditor", "bob", st.file("alice.token").string()).exit_code, 1);  // names are unique

  // Only slow hashes are stored: no token secret anywhere in the data folder.
  const auto db = st.data() / "station.db";
  const std::string secret = token.substr(6);
  for (const auto& e : fs::recursive_directory_iterator(st.data())) {
    if (e.is_regular_file()) {
      EXPECT_EQ(read_file(e.path()).find(secret), std::string::npos) << e.path();
    }
  }
  const auto hash = run({"sqlite3", db.string(), "SELECT token_hash FROM users WHERE name = 'alice'"});
  EXPECT_EQ(hash.out.rfind("$argon2id$", 0), 0u) << hash.out;

  // Every grant and every denial is in the journal, with who did it.
  const auto j = run({"sqlite3", db.string(), "SELECT actor || ' ' || action FROM journal WHERE action LIKE 'user.%' "
                                              "OR action = 'auth.denied' ORDER BY seq"});
  EXPECT_NE(j.out.find("alice user.added"), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("olga auth.denied"), std::string::npos) << j.out;
  EXPECT_NE(j.out.find(" auth.denied"), std::string::npos) << j.out;
  const auto v = run({station_bin(), "audit", "verify", "--data", st.data().string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

}  // namespace
}  // namespace station::test
