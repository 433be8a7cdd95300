package io.bifuse.cuda;

import static org.junit.jupiter.api.Assertions.*;

import io.bifuse.Linear;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The argument checks of {@link DeviceWeights} need no device: they only look at sizes, addresses and
 * openness, so wrapped fake addresses stand in for device tensors (nothing is dereferenced).
 */
class DeviceWeightsTest {
    static final long BASE = 0x7f0000000000L;

    /** Entries of a layer 3 × 5 with bias and a layer 2 × 3 without, in the op's own (fake) buffers. */
    static List<DeviceWeights.Entry> entries() {
        List<DeviceWeights.Entry> e = new ArrayList<>();
        DeviceWeights.add(e, "u", Linear.random(3, 5, true, 1), DeviceMemory.wrap(BASE, 60), DeviceMemory.wrap(BASE + 64, 12));
        DeviceWeights.add(e, "p", Linear.random(2, 3, false, 2), DeviceMemory.wrap(BASE + 128, 24), DeviceMemory.wrap(BASE + 256, 8));
        return e;
    }

    static DeviceMemory floats(long offset, int n) { return DeviceMemory.wrap(BASE + 4096 + offset, 4L * n); }

    @Test void namesFollowStateDictOrderAndSkipMissingBiases() {
        assertEquals(List.of("u.weight", "u.bias", "p.weight"), DeviceWeights.names(entries()));
    }

    @Test void rightTensorsPass() {
        DeviceWeights.check(entries(), List.of(floats(0, 15), floats(64, 3), floats(128, 6)));
    }

    @Test void eachWrongTensorIsNamed() {
        List<DeviceWeights.Entry> e = entries();
        expect("tensors: expected 3 device tensors [u.weight, u.bias, p.weight], got null", () -> DeviceWeights.check(e, null));
        expect("tensors: expected 3 device tensors [u.weight, u.bias, p.weight], got 2", () -> DeviceWeights.check(e, List.of(floats(0, 15), floats(64, 3))));
        expect("u.bias: expected device memory of 12 bytes, got null",
                () -> DeviceWeights.check(e, java.util.Arrays.asList(floats(0, 15), null, floats(128, 6))));
        expect("p.weight: expected exactly 6 floats (24 bytes), got 28 bytes", () -> DeviceWeights.check(e, List.of(floats(0, 15), floats(64, 3), floats(128, 7))));
        expect("u.weight: expected exactly 15 floats (60 bytes), got 56 bytes", () -> DeviceWeights.check(e, List.of(floats(0, 14), floats(64, 3), floats(128, 6))));
        expect("u.bias: expected a 4-byte aligned address", () -> DeviceWeights.check(e, List.of(floats(0, 15), floats(66, 3), floats(128, 6))));
    }

    static void expect(String message, Runnable call) {
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, call::run);
        assertTrue(ex.getMessage().startsWith(message), () -> "expected a message starting with \"" + message + "\", got \"" + ex.getMessage() + "\"");
    }
}
