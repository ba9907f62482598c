"use client";

import { MessageSquareOff, Send, X } from "lucide-react";
import { useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { Button } from "@/components/ui/button";
import { MAX_CHAT_MESSAGE_BYTES, encodedSize, type ChatMessage, type ChatStatus } from "@/lib/chat";
import { cn } from "@/lib/utils";

interface ChatPanelProps {
  status: ChatStatus;
  messages: ChatMessage[];
  /** Returns why the message was not sent, or null. */
  onSend: (text: string) => string | null;
  onClose: () => void;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

export function ChatPanel({ status, messages, onSend, onClose }: ChatPanelProps) {
  const [draft, setDraft] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const listRef = useRef<HTMLOListElement>(null);
  const size = useMemo(() => encodedSize(draft), [draft]);
  const tooLong = size > MAX_CHAT_MESSAGE_BYTES;
  const canSend = status === "ready" && draft.trim().length > 0 && !tooLong;

  useEffect(() => {
    const list = listRef.current;
    if (list) list.scrollTop = list.scrollHeight;
  }, [messages.length]);

  const send = (event?: FormEvent) => {
    event?.preventDefault();
    if (!canSend) return;
    const refused = onSend(draft);
    setProblem(refused);
    if (!refused) setDraft("");
  };
  const onKeyDown = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey) send(event);
  };

  return (
    <aside
      aria-label="Chat"
      data-testid="chat-panel"
      data-chat-status={status}
      className="flex h-full w-full flex-col rounded-xl border border-border/60 bg-card/90 shadow-xl shadow-black/30 backdrop-blur"
    >
      <div className="flex items-center justify-between border-b border-border/60 px-4 py-2">
        <h2 className="text-sm font-semibold">Chat</h2>
        <Button size="sm" variant="ghost" aria-label="Close chat" onClick={onClose}>
          <X />
        </Button>
      </div>
      {status === "unavailable" ? (
        <div className="flex flex-1 flex-col items-center justify-center gap-2 p-6 text-center text-sm text-muted-foreground">
          <MessageSquareOff className="size-6" />
          <p data-testid="chat-unavailable">Chat is unavailable: this server does not offer data channels.</p>
        </div>
      ) : (
        <ol ref={listRef} className="flex-1 space-y-3 overflow-y-auto p-4" data-testid="chat-messages">
          {messages.length === 0 && (
            <li className="text-center text-sm text-muted-foreground">
              {status === "connecting" ? "Connecting chat…" : "No messages yet."}
            </li>
          )}
          {messages.map((message) => (
            <li key={message.seq} data-testid="chat-message" data-own={message.peerId === null ? "true" : "false"}>
              <div className="flex items-baseline gap-2 text-xs">
                <span className="font-semibold" data-testid="chat-sender">
                  {message.peerId === null ? "You" : message.senderName || "Guest"}
                </span>
                <time className="text-muted-foreground" dateTime={new Date(message.at).toISOString()}>
                  {timeFormat.format(message.at)}
                </time>
              </div>
              <p
                className={cn(
                  "mt-0.5 whitespace-pre-wrap break-words text-sm",
                  message.peerId === null && "text-primary",
                )}
                data-testid="chat-text"
              >
                {message.text}
              </p>
            </li>
          ))}
        </ol>
      )}
      <form className="grid gap-1 border-t border-border/60 p-3" onSubmit={send}>
        <div className="flex items-end gap-2">
          <textarea
            aria-label="Message"
            rows={2}
            value={draft}
            disabled={status !== "ready"}
            placeholder={status === "ready" ? "Write a message" : "Chat is not available"}
            className="min-h-10 flex-1 resize-none rounded-md border border-input bg-transparent px-3 py-2 text-sm outline-none focus-visible:ring-2 focus-visible:ring-ring disabled:opacity-50"
            onChange={(event) => {
              setDraft(event.target.value);
              setProblem(null);
            }}
            onKeyDown={onKeyDown}
          />
          <Button type="submit" size="sm" aria-label="Send" disabled={!canSend}>
            <Send />
          </Button>
        </div>
        {(tooLong || problem) && (
          <p role="alert" className="text-xs text-destructive" data-testid="chat-error">
            {tooLong
              ? `Message too long: ${Math.ceil(size / 1024)} KiB of at most ${MAX_CHAT_MESSAGE_BYTES / 1024} KiB.`
              : `Not sent: ${problem}`}
          </p>
        )}
      </form>
    </aside>
  );
}
