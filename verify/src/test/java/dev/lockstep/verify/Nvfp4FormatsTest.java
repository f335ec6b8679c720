package dev.lockstep.verify;

import dev.lockstep.kernels.E2M1;
import dev.lockstep.kernels.E4M3;
import dev.lockstep.kernels.Nvfp4Quantizer;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.memory.TensorView;
import org.junit.jupiter.api.Test;

import java.lang.foreign.ValueLayout;
import java.net.URISyntaxException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** The NVFP4 number formats: E4M3 against PyTorch's cast (all 100,038 values), E2M1's tie table, NVFP4.md's worked example. */
class Nvfp4FormatsTest {
    static Path resource(String name) {
        try {
            return Path.of(Nvfp4FormatsTest.class.getResource("/golden/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void e4m3MatchesPyTorchOnEveryGoldenValue() {
        try (SafetensorsFile f = SafetensorsFile.open(resource("e4m3.safetensors"))) {
            float[] input = Golden.floats(f, "input");
            float[] value = Golden.floats(f, "e4m3_value");
            TensorView bits = f.view("e4m3_bits");
            assertEquals(100_038, input.length);
            int mismatches = 0;
            String first = null;
            for (int i = 0; i < input.length; i++) {
                int expected = bits.data().get(ValueLayout.JAVA_BYTE, i) & 0xff;
                int actual = E4M3.fromFloat(input[i]);
                boolean decodes = Float.floatToIntBits(E4M3.toFloat(expected)) == Float.floatToIntBits(value[i]);
                if (actual != expected || !decodes) {
                    mismatches++;
                    if (first == null) {
                        first = "input " + input[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(input[i])) + "): expected 0x"
                                + Integer.toHexString(expected) + " = " + value[i] + ", got 0x" + Integer.toHexString(actual)
                                + ", decode " + E4M3.toFloat(expected);
                    }
                }
            }
            assertEquals(0, mismatches, "first mismatch: " + first);
        }
    }

    @Test
    void e4m3DecodesEveryByteAsTheFormatDefines() {
        for (int b = 0; b < 256; b++) {
            int e = (b >> 3) & 0xf, m = b & 7;
            double magnitude = e == 0 ? m * Math.pow(2, -9) : Math.pow(2, e - 7) * (1 + m / 8.0);
            if ((b & 0x7f) == 0x7f) {
                assertEquals(Float.NaN, E4M3.toFloat(b), "NaN 0x" + Integer.toHexString(b));
            } else {
                assertEquals((float) ((b & 0x80) != 0 ? -magnitude : magnitude), E4M3.toFloat(b), "0x" + Integer.toHexString(b));
                assertEquals(b, E4M3.fromFloat(E4M3.toFloat(b)) | ((b & 0x80) != 0 && (b & 0x7f) == 0 ? 0x80 : 0), "round trip 0x" + Integer.toHexString(b));
            }
        }
        assertEquals(0x7e, E4M3.fromFloat(1e9f), "saturates");
        assertEquals(0xfe, E4M3.fromFloat(-500f), "saturates negative");
    }

    @Test
    void e2m1RoundsHalfToEvenAndSaturates() {
        float[] in = {0f, 0.25f, 0.2500001f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5f, 5.0001f, 100f, -0.1f, -0.75f, -3.5f, -7f, 1.26f, 2.49f};
        int[] codes = {0, 0, 1, 2, 2, 4, 4, 6, 6, 7, 7, 8, 10, 14, 15, 3, 4};
        for (int i = 0; i < in.length; i++) {
            assertEquals(codes[i], E2M1.fromFloat(in[i]), "E2M1(" + in[i] + ")");
        }
        for (int c = 0; c < 16; c++) {
            assertEquals(c == 8 ? 0 : c, E2M1.fromFloat(E2M1.toFloat(c)), "round trip of code " + c); // -0 encodes as +0
        }
    }

    /** docs/NVFP4.md section 6, byte for byte. */
    @Test
    void theWorkedExample() {
        float[] x = {0, -0.125f, 0.375f, 0.3f, 0.5f, -0.625f, 0.75f, 0.875f, 1, -1.25f, 1.5f, 1.75f, -2, 2.5f, -2.75f, 3};
        float scale2 = Nvfp4Quantizer.weightScale2(10.5f);
        assertEquals("0000803b", HexFormat.of().formatHex(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(scale2).array()));
        byte[] codes = new byte[8], scales = new byte[1];
        Nvfp4Quantizer.quantizeRow(x, 0, 16, scale2, codes, 0, scales, 0);
        assertEquals(0x70, scales[0] & 0xff);
        assertEquals("8012a243c4656e7f", HexFormat.of().formatHex(codes));
        float[] decoded = new float[16];
        for (int i = 0; i < 16; i++) {
            decoded[i] = Nvfp4Quantizer.dequantize((codes[i / 2] >> (4 * (i % 2))) & 0xf, scales[0], scale2);
        }
        assertArrayEquals(new float[]{0, -0f, 0.5f, 0.25f, 0.5f, -0.5f, 0.75f, 1, 1, -1, 1.5f, 2, -2, 2, -3, 3}, decoded);
    }

    @Test
    void aZeroBlockGetsScaleOneAndAllZeroCodes() {
        float[] x = new float[32];
        x[20] = 1f;
        byte[] codes = new byte[16], scales = new byte[2];
        Nvfp4Quantizer.quantizeRow(x, 0, 32, Nvfp4Quantizer.weightScale2(1f), codes, 0, scales, 0);
        assertEquals(E4M3.fromFloat(1f), scales[0] & 0xff, "zero block: scale 1.0");
        assertEquals("0000000000000000", HexFormat.of().formatHex(codes, 0, 8));
    }
}
