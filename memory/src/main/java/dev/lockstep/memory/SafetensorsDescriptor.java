package dev.lockstep.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * Layout of a safetensors file.
 *
 * <pre>
 *   0                8                      8 + N                                  fileSize
 *   +----------------+----------------------+---------------------------------------+
 *   | N: u64, LE     | header: N bytes of   | data section: tensor bytes; every     |
 *   |                | UTF-8 JSON object    | data_offsets [begin, end) is relative |
 *   |                |                      | to the start of this section          |
 *   +----------------+----------------------+---------------------------------------+
 *
 *   header = { "__metadata__": {str: str}?,  name: {"dtype": str, "shape": [u64...], "data_offsets": [begin, end]}, ... }
 * </pre>
 */
public final class SafetensorsDescriptor {
    public static final int VERSION = 1;
    public static final long HEADER_LENGTH_OFFSET = 0;
    public static final long HEADER_LENGTH_BYTES = Long.BYTES;
    public static final long HEADER_OFFSET = HEADER_LENGTH_OFFSET + HEADER_LENGTH_BYTES;
    /** The reference implementation refuses headers above 100 MB; so do we (a corrupt length must not OOM us). */
    public static final long MAX_HEADER_BYTES = 100L * 1000 * 1000;
    public static final String METADATA_KEY = "__metadata__";

    private static final ValueLayout.OfLong U64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private SafetensorsDescriptor() {
    }

    public static long headerLength(MemorySegment file) {
        return file.get(U64_LE, HEADER_LENGTH_OFFSET);
    }

    public static long dataSectionOffset(long headerLengthBytes) {
        return HEADER_OFFSET + headerLengthBytes;
    }

    /** Checks the header length against the file size before anything is read past the first 8 bytes. */
    public static void checkHeaderLength(Path file, long fileSizeBytes, long headerLengthBytes) {
        if (fileSizeBytes < HEADER_OFFSET) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_LENGTH,
                    file + ": " + fileSizeBytes + " bytes is too short for a safetensors file (at least 8 bytes of header length)");
        }
        if (headerLengthBytes < 2 || headerLengthBytes > MAX_HEADER_BYTES || headerLengthBytes > fileSizeBytes - HEADER_OFFSET) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_LENGTH,
                    file + ": header length " + Long.toUnsignedString(headerLengthBytes) + " bytes is impossible for a "
                            + fileSizeBytes + "-byte file (expected 2.." + Math.min(MAX_HEADER_BYTES, fileSizeBytes - HEADER_OFFSET) + ")");
        }
    }

    /**
     * The header as text: valid UTF-8, starting with '{', and padded (after the JSON object) with spaces
     * only, as the reference writer pads it and the reference reader accepts it.
     */
    public static String headerJson(Path file, byte[] header) {
        String text;
        try {
            text = java.nio.charset.StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(header)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON, file + ": header is not valid UTF-8");
        }
        if (text.isEmpty() || text.charAt(0) != '{') {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                    file + ": header must start with '{' (a JSON object), got byte 0x" + String.format("%02x", header[0] & 0xff));
        }
        int end = text.length();
        while (end > 0 && text.charAt(end - 1) == ' ') {
            end--;
        }
        if (end == 0 || text.charAt(end - 1) != '}') {
            int c = end == 0 ? 0 : text.charAt(end - 1);
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                    file + ": header must be a JSON object padded with spaces only, but it ends with character 0x"
                            + Integer.toHexString(c) + " at header byte " + (8 + end - 1) + " (wrong header length?)");
        }
        return text.substring(0, end);
    }

    /** Checks one tensor's byte range: inside the data section and exactly product(shape) x dtype size long. */
    public static void checkTensorRange(Path file, String name, DType dtype, long[] shape, long beginBytes, long endBytes,
                                        long dataSectionBytes) {
        if (beginBytes < 0 || endBytes < beginBytes) {
            throw new CheckpointException(CheckpointException.Problem.OFFSETS_OUT_OF_RANGE,
                    file + ": tensor '" + name + "' has data_offsets [" + beginBytes + ", " + endBytes + "] (expected 0 <= begin <= end)");
        }
        if (endBytes > dataSectionBytes) {
            throw new CheckpointException(CheckpointException.Problem.OFFSETS_OUT_OF_RANGE,
                    file + ": tensor '" + name + "' ends at data offset " + endBytes + " but the data section holds only "
                            + dataSectionBytes + " bytes (truncated file or corrupt header)");
        }
        long elements = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new CheckpointException(CheckpointException.Problem.HEADER_JSON,
                        file + ": tensor '" + name + "' has negative dimension in shape " + java.util.Arrays.toString(shape));
            }
            try {
                elements = Math.multiplyExact(elements, d);
            } catch (ArithmeticException e) {
                throw new CheckpointException(CheckpointException.Problem.HEADER_JSON, file + ": tensor '" + name + "' has shape "
                        + java.util.Arrays.toString(shape) + ", whose element count overflows a 64-bit integer (corrupt header)");
            }
        }
        long expected;
        try {
            expected = Math.multiplyExact(elements, dtype.sizeBytes());
        } catch (ArithmeticException e) {
            throw new CheckpointException(CheckpointException.Problem.HEADER_JSON, file + ": tensor '" + name + "' has shape "
                    + java.util.Arrays.toString(shape) + " of " + dtype + ", whose byte count overflows a 64-bit integer (corrupt header)");
        }
        if (endBytes - beginBytes != expected) {
            throw new CheckpointException(CheckpointException.Problem.BYTE_LENGTH,
                    file + ": tensor '" + name + "' " + dtype + java.util.Arrays.toString(shape) + " needs " + expected
                            + " bytes but data_offsets [" + beginBytes + ", " + endBytes + "] hold " + (endBytes - beginBytes));
        }
    }
}
