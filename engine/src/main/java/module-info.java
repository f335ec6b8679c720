/** The public API: Engine, Session, generation handles, sampling, tokenizer. */
module dev.lockstep.engine {
    requires transitive dev.lockstep.moe;
    requires ai.djl.tokenizers;
    requires transitive HdrHistogram; // an automatic module (the jar names none); Engine.stepHistograms returns its type
    requires jdk.management; // bench: heap bytes allocated per thread
    requires java.management;
    // DJL's jars are automatic modules and cannot declare what they need; these are the explicit modules
    // they load on the tokenizer path, so a module-path application gets them resolved.
    requires org.slf4j;
    requires com.google.gson;
    exports dev.lockstep.engine;
}
