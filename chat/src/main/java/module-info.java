/** Chat templates, tool-call and reasoning parsers, conversations over an engine session. */
module dev.lockstep.chat {
    requires transitive dev.lockstep.engine;
    requires jinjava; // an automatic module
    requires java.desktop; // javax.el's ELResolver names java.beans.FeatureDescriptor
    requires com.fasterxml.jackson.databind;
    exports dev.lockstep.chat;
}
