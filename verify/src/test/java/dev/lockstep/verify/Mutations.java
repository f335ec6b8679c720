package dev.lockstep.verify;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** Test helper: seeded structural mutations of a JSON tree (the fuzzers' mutation operators). */
final class Mutations {
    private static final JsonNodeFactory F = JsonNodeFactory.instance;
    private static final String[] TYPES = {"BPE", "WordPiece", "Unigram", "Precompiled", "NFC", "ByteLevel", "Split",
            "Metaspace", "Sequence", "Replace", "Strip", "ByteFallback", "Fuse", "TemplateProcessing", "Bogus", ""};

    private Mutations() {
    }

    /** A value of a random kind, including the extremes parsers get wrong. */
    static JsonNode randomValue(SplittableRandom r) {
        return switch (r.nextInt(16)) {
            case 0 -> F.nullNode();
            case 1 -> F.booleanNode(r.nextBoolean());
            case 2 -> F.numberNode(-1);
            case 3 -> F.numberNode(0);
            case 4 -> F.numberNode(Integer.MAX_VALUE);
            case 5 -> F.numberNode(Long.MAX_VALUE);
            case 6 -> F.numberNode(1e300);
            case 7 -> F.numberNode(-2.5);
            case 8 -> F.numberNode(new java.math.BigInteger("123456789012345678901234567890"));
            case 9 -> F.textNode("");
            case 10 -> F.textNode("\u0000\uffff");
            case 11 -> F.arrayNode();
            case 12 -> F.objectNode();
            case 13 -> F.textNode(TYPES[r.nextInt(TYPES.length)]);
            case 14 -> F.numberNode(r.nextInt(1 << 20));
            default -> F.numberNode(1e-30);
        };
    }

    /** Applies one mutation somewhere in {@code root}: delete, replace, retype, duplicate or grow a node. */
    static void mutate(ObjectNode root, SplittableRandom r) {
        // Walk down a random path; stop at a random depth.
        JsonNode parent = root;
        for (int depth = 0; depth < 6; depth++) {
            List<JsonNode> containers = new ArrayList<>();
            parent.forEach(c -> {
                if (c.isContainerNode() && !c.isEmpty()) {
                    containers.add(c);
                }
            });
            if (containers.isEmpty() || r.nextInt(3) == 0) {
                break;
            }
            parent = containers.get(r.nextInt(containers.size()));
        }
        if (parent instanceof ObjectNode o && !o.isEmpty()) {
            List<String> keys = new ArrayList<>();
            o.fieldNames().forEachRemaining(keys::add);
            String key = keys.get(r.nextInt(keys.size()));
            switch (r.nextInt(5)) {
                case 0 -> o.remove(key);
                case 1, 2 -> o.set(key, randomValue(r));
                case 3 -> o.put("type", TYPES[r.nextInt(TYPES.length)]);
                default -> o.set(key + "_x", randomValue(r));
            }
        } else if (parent instanceof ArrayNode a && !a.isEmpty()) {
            int i = r.nextInt(a.size());
            switch (r.nextInt(3)) {
                case 0 -> a.remove(i);
                case 1 -> a.set(i, randomValue(r));
                default -> a.add(randomValue(r));
            }
        }
    }
}
