package dev.lockstep.verify;

import dev.lockstep.interconnect.VectorDescriptor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class VectorDescriptorTest {
    @Test
    void hiddenStateOf256FloatsTakesFourVectors() {
        assertEquals(80, VectorDescriptor.FLOATS_PER_VECTOR);
        assertEquals(4, VectorDescriptor.vectorsForFloats(256));
        assertEquals(1, VectorDescriptor.vectorsForFloats(80));
        assertEquals(2, VectorDescriptor.vectorsForFloats(81));
        assertEquals(0, VectorDescriptor.vectorsForFloats(0));
    }

    @Test
    void packZeroPadsAndRoundTrips() {
        float[] h = new float[256];
        for (int i = 0; i < h.length; i++) {
            h[i] = i * 0.5f - 3f;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ring = arena.allocate(8 * 320L);
            ring.fill((byte) 0x7f);
            assertEquals(4, VectorDescriptor.pack(h, 0, 256, ring, 320));
            for (int i = 256; i < 320; i++) {
                assertEquals(0f, ring.get(ValueLayout.JAVA_FLOAT, 320 + 4L * i), "padding float " + i);
            }
            float[] back = new float[256];
            VectorDescriptor.unpack(ring, 320, back, 0, 256);
            assertArrayEquals(h, back);
            assertThrows(IndexOutOfBoundsException.class, () -> VectorDescriptor.pack(h, 0, 256, ring, 5 * 320));
        }
    }
}
