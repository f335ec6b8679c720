package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerationStats;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.SpecialTokens;
import dev.lockstep.engine.StopCondition;
import dev.lockstep.engine.Tokenizer;
import dev.lockstep.moe.ConfigException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * BOS and the end-of-sequence set, as the model's files declare them: {@code add_bos_token} with {@code bos_token}
 * (tokenizer_config.json) puts BOS before the HF ids; {@code eos_token_id} lists in generation_config.json and
 * config.json make one set, and generation stops at any of its ids.
 */
class SpecialTokensTest {
    @TempDir
    Path tmp;

    Path copyOfTiny() throws IOException {
        Path src = FamilyGoldenTest.tiny("mixtral"), dir = tmp.resolve("m");
        Files.createDirectories(dir);
        try (var files = Files.list(src)) {
            for (Path f : files.toList()) {
                Files.copy(f, dir.resolve(f.getFileName()));
            }
        }
        return dir;
    }

    @Test
    void theTinyModelsDeclareNoBosAndEosZero() {
        SpecialTokens s = SpecialTokens.read(FamilyGoldenTest.tiny("gpt_oss"), 4096);
        assertFalse(s.addBos());
        assertArrayEquals(new int[]{0}, s.eos());
        assertEquals(0, s.id("<|endoftext|>").getAsInt());
    }

    @Test
    void addBosTokenPutsBosBeforeTheHfIds() throws IOException {
        Path dir = copyOfTiny();
        String tc = Files.readString(dir.resolve("tokenizer_config.json"));
        Files.writeString(dir.resolve("tokenizer_config.json"), tc.replace("\"add_bos_token\": false", "\"add_bos_token\": true"));
        int[] hf = Golden.intArray(FamilyGoldenTest.goldenJson("mixtral").get("prompts").get("p0"));
        try (Tokenizer t = Tokenizer.load(dir, 4096); Tokenizer plain = Tokenizer.load(FamilyGoldenTest.tiny("mixtral"), 4096)) {
            assertArrayEquals(hf, plain.encode("In the beginning God created the heaven and the earth."), "no BOS, as HF encodes it");
            int[] withBos = new int[hf.length + 1];
            System.arraycopy(hf, 0, withBos, 1, hf.length); // BOS is <|endoftext|>, id 0
            assertArrayEquals(withBos, t.encode("In the beginning God created the heaven and the earth."));
        }
    }

    @Test
    void eosListsOfBothFilesMakeOneSetAndGenerationStopsAtAnyOfThem() throws IOException {
        Path dir = copyOfTiny();
        // the greedy continuation of p0 on tiny mixtral: its third token, made an end-of-sequence id by config.json
        int[] greedy = Golden.intArray(FamilyGoldenTest.goldenJson("mixtral").get("greedy").get("p0"));
        Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [0, 5]}");
        String config = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), config.replace("\"eos_token_id\": 0", "\"eos_token_id\": [" + greedy[2] + "]"));
        SpecialTokens s = SpecialTokens.read(dir, 4096);
        int[] expected = Arrays.stream(new int[]{0, 5, greedy[2]}).sorted().distinct().toArray();
        assertArrayEquals(expected, s.eos());
        int[] prompt = Golden.intArray(FamilyGoldenTest.goldenJson("mixtral").get("prompts").get("p0"));
        try (Engine engine = Engine.load(dir, new EngineOptions(1).withKernelWarmup(false)); Session session = engine.newSession(64)) {
            GenerationStats stats = session.generate(prompt, 12, SamplingParams.GREEDY, StopCondition.EOS, (id, text) -> { });
            assertTrue(stats.stoppedAtEos(), "stopped at an id of the set");
            assertEquals(2, stats.generatedTokens(), "the third greedy token is an end-of-sequence id");
        }
    }

    @Test
    void addBosWithoutAKnownBosTokenIsAnErrorNamingTheFile() throws IOException {
        Path dir = copyOfTiny();
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"add_bos_token\": true, \"bos_token\": \"<s>\"}");
        ConfigException e = assertThrows(ConfigException.class, () -> SpecialTokens.read(dir, 4096));
        assertTrue(e.getMessage().contains("tokenizer_config.json") && e.getMessage().contains("<s>"), e.getMessage());
    }
}
