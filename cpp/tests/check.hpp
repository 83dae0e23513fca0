// A dozen lines of test harness: TEST(name) registers, CHECK* record failures and go on,
// check::run_all() prints one line per test and the closing "N passed, N failed" line.
#ifndef SREXPORT_TESTS_CHECK_HPP
#define SREXPORT_TESTS_CHECK_HPP

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "srexport/srexport.hpp"

namespace check {

struct Skip {
    std::string reason;
};

inline std::vector<std::pair<const char*, std::function<void()>>>& registry() {
    static std::vector<std::pair<const char*, std::function<void()>>> tests;
    return tests;
}
inline int& failures() {
    static int n = 0;
    return n;
}
struct Register {
    Register(const char* name, std::function<void()> body) { registry().emplace_back(name, std::move(body)); }
};

inline void report(const char* file, int line, const std::string& what) {
    std::printf("    %s:%d: %s\n", file, line, what.c_str());
    ++failures();
}

inline int run_all() {
    int passed = 0, failed = 0, skipped = 0;
    for (auto& test : registry()) {
        const int before = failures();
        try {
            test.second();
        } catch (const Skip& s) {
            std::printf("SKIP %s: %s\n", test.first, s.reason.c_str());
            ++skipped;
            continue;
        } catch (const std::exception& e) {
            report(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
        }
        const bool ok = failures() == before;
        std::printf("%s %s\n", ok ? "PASS" : "FAIL", test.first);
        (ok ? passed : failed)++;
    }
    std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed) return 1;
    return passed == 0 && skipped > 0 ? 77 : 0;  // 77: ctest's SKIP_RETURN_CODE

}

}  // namespace check

#define TEST(name)                                                  \
    static void name();                                             \
    static check::Register register_##name(#name, &name);           \
    static void name()

#define CHECK(cond)                                                  \
    do {                                                             \
        if (!(cond)) check::report(__FILE__, __LINE__, "CHECK(" #cond ")"); \
    } while (0)

#define CHECK_EQ(a, b)                                                                  \
    do {                                                                                \
        auto va_ = (a);                                                                 \
        auto vb_ = (b);                                                                 \
        if (!(va_ == vb_)) {                                                            \
            std::ostringstream m_;                                                      \
            m_ << #a " == " #b ": " << va_ << " != " << vb_;                            \
            check::report(__FILE__, __LINE__, m_.str());                                \
        }                                                                               \
    } while (0)

// expr must throw srexport::Error with this status and a message containing `text`.
#define CHECK_THROWS(expr, status_, text)                                                              \
    do {                                                                                               \
        try {                                                                                          \
            (void)(expr);                                                                              \
            check::report(__FILE__, __LINE__, "no exception from " #expr);                             \
        } catch (const srexport::Error& e_) {                                                          \
            if (e_.status() != (status_) || std::string(e_.what()).find(text) == std::string::npos)    \
                check::report(__FILE__, __LINE__, std::string("wrong error from " #expr ": ") + e_.what()); \
        }                                                                                              \
    } while (0)

#endif  // SREXPORT_TESTS_CHECK_HPP
