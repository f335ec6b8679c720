package dev.lockstep.chat;

/**
 * A chat template that cannot be compiled or rendered: a syntax error, a construct the renderer does not support
 * (named), or the template's own {@code raise_exception(...)} (its message, e.g. "System role not supported").
 */
public final class ChatTemplateException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ChatTemplateException(String message) {
        super(message);
    }

    public ChatTemplateException(String message, Throwable cause) {
        super(message, cause);
    }
}
