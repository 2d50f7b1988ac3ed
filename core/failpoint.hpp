// Crash points for the tests that SIGKILL a stage at a chosen line.
// INGESTD_FAILPOINTS="stager.after_commit" makes the process send itself SIGKILL when it
// reaches failpoint("stager.after_commit"); a name followed by ":N" fires on the Nth hit.
// Without the variable a failpoint is one relaxed load.
#pragma once

#include <string_view>

namespace ingestd {
void failpoint(std::string_view name);
}
