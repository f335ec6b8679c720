package dev.lockstep.engine;

/** Receives each generated token and the text it completes (empty while a UTF-8 character is incomplete). */
@FunctionalInterface
public interface TokenSink {
    void accept(int tokenId, String text);
}
