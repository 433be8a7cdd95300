package io.bifuse.tools;

import io.bifuse.Operators;
import io.bifuse.cuda.CudaContext;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One operator's specification for the tools: its rows of {@code check} against its reference on every
 * backend that can run, and the sizes {@code bench} and the JMH benchmarks time ({@link #benchCases}:
 * the labels, cost model, inputs and calls written once for both). {@link #all()} has one per operator of
 * {@link Operators#all()}, found by the operator's name: a new operator's suite needs no other edit.
 */
public interface Suite {
    /**
     * Adds rows to {@code report}: each backend against the float64 reference on fresh inputs from
     * {@code rnd}, GPU outputs NaN-poisoned first. {@code gpu} is null without a usable driver/device;
     * a suite whose GPU path needs more (cuFFT, cuBLAS, kernels) says so with {@link Check.Report#skipped}.
     */
    void check(boolean quick, CudaContext gpu, SplittableRandom rnd, Check.Report report);

    /** What {@code bench} times ({@code quick}: small sizes, seconds) and, with {@code quick} false, the JMH benchmarks. */
    List<BenchCase> benchCases(boolean quick);

    /** The operator's name, as its rows spell it. */
    default String name() { return getClass().getSimpleName().replace("Suite", ""); }

    /** Null when the op's CUDA path can run with {@code ctx} open, else why not (kernels, cuBLAS, cuFFT). */
    String gpuUnavailableReason();

    /** One suite per operator, in {@link Operators#all()}'s order: {@code io.bifuse.tools.XSuite} for the operator X. */
    public static List<Suite> all() { return Operators.names().stream().map(Suite::named).toList(); }

    /** The suite of operator {@code op} ({@code io.bifuse.tools.<op>Suite}, a no-argument constructor). */
    static Suite named(String op) {
        String name = Suite.class.getPackageName() + "." + op + "Suite";
        try {
            Class<?> type = Class.forName(name);
            if (!Suite.class.isAssignableFrom(type)) throw new IllegalStateException(name + " does not implement Suite");
            var c = type.getDeclaredConstructor();
            return (Suite) c.newInstance();
        } catch (java.lang.reflect.InvocationTargetException e) {
            throw new IllegalStateException(name + ": " + e.getCause(), e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("operator " + op + ": expected its suite " + name + " with a no-argument constructor: " + e, e);
        }
    }
}
