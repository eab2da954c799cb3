/* chat.h - conversation -> prompt text, in the format the model was tuned on.
 * Room: tok. May touch: core. Knows nothing of token ids: the rendered text is
 * tokenized afterwards with special-token parsing on.
 *
 * A GGUF carries its chat template as Jinja source (tokenizer.chat_template).
 * kvlm does not run Jinja: it recognises the template family and renders it in C.
 *   ChatML  (<|im_start|>role\ncontent<|im_end|>\n; SmolLM2, Qwen) - also the
 *           default when the file has no template, as in llama.cpp
 *   Llama 3 (<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>)
 *   Gemma   (<start_of_turn>role\ncontent<end_of_turn>\n) - chosen by a template
 *           holding <start_of_turn>, or with no template when the architecture is
 *           gemma/gemma2/gemma3 (Gemma 3 270M's GGUF has none; llama.cpp would fall
 *           back to ChatML, which is wrong for it)
 * For ChatML the default system message is taken from the template's literal
 * "<|im_start|>system\n...<|im_end|>" text, and added when the first message is
 * not a system message (SmolLM2's template does exactly that).
 * Gemma follows Google's official Gemma 3 template: the role "assistant" is named
 * "model"; every content is trimmed of leading and trailing whitespace (Jinja's
 * trim: Python's str.strip()); Gemma has no system role, so a system message's text
 * (untrimmed), followed by a blank line, is prepended to the text of the next user
 * (or tool) turn.
 * (Where the official template would drop a system message that no user turn
 * follows, kvlm renders it as a user turn of its own.) The generation prompt is
 * "<start_of_turn>model\n". No <bos>: the tokenizer adds it (add_bos_token). */
#ifndef KVLM_TOK_CHAT_H
#define KVLM_TOK_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include "kvlm.h"

/* KVLM_ERR_INVALID for a NULL role/content or a role other than system, user,
 * assistant, tool; KVLM_ERR_UNSUPPORTED for a template of another family;
 * KVLM_ERR_NOMEM. *out is malloc'd, NUL-terminated. tmpl (the file's template) and
 * arch (general.architecture, which picks the format when there is no template)
 * may be NULL. */
kvlm_err chat_render(const char *tmpl, const char *arch, const kvlm_chat_msg *msgs, size_t n_msgs,
                     bool add_assistant, char **out, char *err, size_t errlen);

#endif
