// libbifuse_simkernels.so: every kernel of cuda/*.cu compiled for the host against the fiber shim
// (native-build/sim/cuda_runtime.h), with the table the simulated driver (native-build/sim/driver.cpp)
// looks kernels up in. The includes come from native-build/sim/gen-kernel-table.sh (build/sim/gen):
//
//   native-build/sim/gen-kernel-table.sh [--nvcc | -r RESOURCE_USAGE] [KERNEL_DIR]
//   g++ -std=c++20 -O2 -fPIC -shared -pthread -fvisibility=hidden -Wno-unknown-pragmas -I native-build/sim
//       -I cuda -I build/sim/gen -I/usr/local/cuda/include -o build/sim/libbifuse_simkernels.so native-build/sim/kernels.cpp
//
// Only the three functions of sim_ext.h are exported. Each entry's parameter list is deduced from the
// kernel's C++ function type, never from what the Java side believes, so that a marshalling mismatch
// shows as a wrong size or signature in the driver's messages instead of as silently wrong memory.
#include <cuda_runtime.h>  // the shim: found first through -I native-build/sim

#include "sim_kernel_sources.inc"

#include "sim_ext.h"

#include <string.h>

#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#define BIFUSE_SIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// ---- readable parameter types ---------------------------------------------------------------------------
template <class T>
struct TypeName {
    static std::string get() {
        int status = 0;
        char* d = abi::__cxa_demangle(typeid(T).name(), nullptr, nullptr, &status);
        std::string s = status == 0 && d ? d : typeid(T).name();
        free(d);
        return s;
    }
};
#define BIFUSE_SIM_TYPE_NAME(T, text) \
    template <>                       \
    struct TypeName<T> {              \
        static std::string get() { return text; } \
    };
BIFUSE_SIM_TYPE_NAME(float, "float")
BIFUSE_SIM_TYPE_NAME(double, "double")
BIFUSE_SIM_TYPE_NAME(int, "int")
BIFUSE_SIM_TYPE_NAME(unsigned, "unsigned")
BIFUSE_SIM_TYPE_NAME(long, "int64_t")  // how cuda/*.cu spell it; long on LP64 Linux
BIFUSE_SIM_TYPE_NAME(unsigned long, "uint64_t")
BIFUSE_SIM_TYPE_NAME(long long, "long long")
BIFUSE_SIM_TYPE_NAME(unsigned long long, "unsigned long long")
BIFUSE_SIM_TYPE_NAME(short, "short")
BIFUSE_SIM_TYPE_NAME(unsigned short, "unsigned short")
BIFUSE_SIM_TYPE_NAME(char, "char")
BIFUSE_SIM_TYPE_NAME(signed char, "signed char")
BIFUSE_SIM_TYPE_NAME(unsigned char, "unsigned char")
BIFUSE_SIM_TYPE_NAME(bool, "bool")
BIFUSE_SIM_TYPE_NAME(void, "void")
BIFUSE_SIM_TYPE_NAME(float2, "float2")
BIFUSE_SIM_TYPE_NAME(double2, "double2")
BIFUSE_SIM_TYPE_NAME(uint3, "uint3")
BIFUSE_SIM_TYPE_NAME(dim3, "dim3")
#undef BIFUSE_SIM_TYPE_NAME
template <class T>
struct TypeName<const T> {
    static std::string get() { return "const " + TypeName<T>::get(); }
};
template <class T>
struct TypeName<T*> {
    static std::string get() { return TypeName<T>::get() + "*"; }
};

// ---- one table entry per kernel -------------------------------------------------------------------------
thread_local std::string t_error;

template <auto K>
struct Entry;

template <class... P, void (*K)(P...)>
struct Entry<K> {
    using Args = std::tuple<std::remove_cvref_t<P>...>;
    static_assert((std::is_trivially_copyable_v<std::remove_cvref_t<P>> && ...), "kernel parameters are copied as bytes");
    // A by-value struct parameter (cuda/*.cu's XxxParams) arrives as the bytes the caller laid out by C rules
    // (bifuse's KernelSpec "{...}"): that agrees with this compiler's layout only for a standard-layout type.
    static_assert((std::is_standard_layout_v<std::remove_cvref_t<P>> && ...), "struct parameters must have C layout");
    static constexpr unsigned kSizes[sizeof...(P) ? sizeof...(P) : 1] = {(unsigned)sizeof(std::remove_cvref_t<P>)...};
    // cuLaunchKernel's `extra` buffer places each parameter at its type's alignment, a struct's being its widest
    // member's, not min(size, 8).
    static constexpr unsigned kAligns[sizeof...(P) ? sizeof...(P) : 1] = {(unsigned)alignof(std::remove_cvref_t<P>)...};

    static inline const char* name = "";

    static std::string signature() {
        std::string s = "(";
        ((s += TypeName<std::remove_cvref_t<P>>::get() + ", "), ...);
        if (sizeof...(P)) s.resize(s.size() - 2);
        return s + ")";
    }

    template <size_t... I>
    static void unpack(void** params, Args& args, std::index_sequence<I...>) {
        // memcpy: cuLaunchKernel's argument pointers need not be aligned for the type. A struct parameter's
        // entry points at the whole struct, copied here as one value of its type like any scalar.
        ((memcpy(&std::get<I>(args), params[I], sizeof(std::tuple_element_t<I, Args>))), ...);
    }

    static int launch(void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
        return launch_dynamic(params, gx, gy, gz, bx, by, bz, 0);
    }

    static int launch_dynamic(void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                              unsigned shared_bytes) {
        t_error.clear();
        if (sizeof...(P) && !params) {
            t_error = std::string(name) + ": kernelParams is null, the kernel takes " + std::to_string(sizeof...(P)) + " parameters";
            return 1;
        }
        for (size_t i = 0; i < sizeof...(P); ++i)
            if (!params[i]) {
                t_error = std::string(name) + ": kernelParams[" + std::to_string(i) + "] is null";
                return 1;
            }
        Args args;
        unpack(params, args, std::index_sequence_for<P...>{});
        // Every thread gets its own copy of the parameters (as each GPU thread may modify its own).
        auto call = [&args] { std::apply(K, args); };
        using Call = decltype(call);
        t_error = emu::run_grid(name, [](void* c) { (*static_cast<Call*>(c))(); }, &call, dim3(gx, gy, gz), dim3(bx, by, bz),
                                 shared_bytes);
        return t_error.empty() ? 0 : 1;
    }
};

struct Table {
    std::vector<bifuse_sim_kernel> entries;
    std::vector<std::string> signatures;  // owns the strings the entries point at
    std::string build_info;
};

template <auto K>
void add(Table& t, const char* name, int registers, int smem) {
    using E = Entry<K>;
    E::name = name;
    emu::register_kernel_name(name);
    t.signatures.push_back(E::signature());
    t.entries.push_back(bifuse_sim_kernel{name, (int)(std::tuple_size_v<typename E::Args>), E::kSizes, nullptr, registers, smem, &E::launch, E::kAligns, &E::launch_dynamic});
}

const Table& table() {
    static const Table t = [] {
        Table t;
#define BIFUSE_SIM_KERNEL(kname, regs, smem) add<&kname>(t, #kname, regs, smem);
#include "sim_kernel_table.inc"
#undef BIFUSE_SIM_KERNEL
        for (size_t i = 0; i < t.entries.size(); ++i) t.entries[i].signature = t.signatures[i].c_str();
        t.build_info = std::string("libbifuse_simkernels: ") + std::to_string(t.entries.size()) + " kernels from " BIFUSE_SIM_KERNEL_DIR
                       ", g++ " __VERSION__ " (C++" + std::to_string(__cplusplus / 100 % 100) + ")" +
#if EMU_FIBER_X86_64
                       ", fibers: x86-64 context switch"
#else
                       ", fibers: ucontext"
#endif
                       "; " BIFUSE_SIM_RESOURCE_INFO "; racecheck " +
                       (emu::racecheck() ? "on" : "off") + " (BIFUSE_SIM_RACECHECK)";
        return t;
    }();
    return t;
}

}  // namespace

BIFUSE_SIM_EXPORT const bifuse_sim_kernel* bifuse_sim_kernel_table(int* count) {
    const Table& t = table();
    if (count) *count = (int)t.entries.size();
    return t.entries.data();
}

BIFUSE_SIM_EXPORT const char* bifuse_sim_kernels_error(void) { return t_error.c_str(); }

BIFUSE_SIM_EXPORT const char* bifuse_sim_kernels_build_info(void) { return table().build_info.c_str(); }

// Called by the driver after a kernel faulted (its signal handler left the kernel mid-block).
BIFUSE_SIM_EXPORT void bifuse_sim_kernels_abort(void) {
    emu::abort_grid();
    t_error = "the kernel faulted (a wild address)";
}

// The driver reports launch failures itself (bifuse_sim_kernels_error); the shim stays quiet.
__attribute__((constructor)) static void bifuse_simkernels_init() { emu::set_print_errors(false); }
