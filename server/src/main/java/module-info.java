/** An OpenAI-compatible HTTP server over an in-process engine. */
module dev.lockstep.server {
    requires transitive dev.lockstep.chat;
    requires io.helidon.webserver;
    requires io.helidon.http;
    requires com.fasterxml.jackson.databind;
    exports dev.lockstep.server;
}
