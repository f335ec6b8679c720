package dev.lockstep.memory;

import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The one Jackson mapper Lockstep reads its JSON files with (safetensors headers, shard index, config.json,
 * tokenizer.json): strict (a duplicate key or trailing content is an error, not a silent last-wins), and shared,
 * because creating a mapper is the most expensive part of reading a small file in a fresh JVM. Thread-safe for
 * reading.
 */
public final class Json {
    public static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION.mappedFeature());

    private Json() {
    }
}
