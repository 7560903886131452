// Node clients against an xAI-compatible base URL (the proxy): node clients.mjs <case>.
// Prints one JSON line the Python test checks; exits non-zero on any failure.
import OpenAI from "openai";
import { createXai } from "@ai-sdk/xai";
import { generateObject, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";

// The deprecation notice for generateObject (still the documented way) would only add noise.
globalThis.AI_SDK_LOG_WARNINGS = false;

const baseURL = process.env.GROK_BASE_URL;
const apiKey = process.env.XAI_API_KEY;
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
  },
};

const cases = {
  async "openai-stream"() {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const stream = client.responses.stream({ model: "grok-4.3", input: "Hello" });
    let text = "";
    stream.on("response.output_text.delta", (event) => (text += event.delta));
    const final = await stream.finalResponse();
    const chat = client.chat.completions.stream({
      model: "grok-4.3",
      messages: [{ role: "user", content: "Hi" }],
    });
    const completion = await chat.finalChatCompletion();
    return { text, final: final.output_text, chat: completion.choices[0].message.content };
  },
  async "openai-tools"() {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const messages = [{ role: "user", content: "Weather in Lima?" }];
    const stream = client.chat.completions.stream({ model: "grok-4.3", messages, tools: [weather] });
    const asked = (await stream.finalChatCompletion()).choices[0].message;
    const call = asked.tool_calls[0];
    messages.push(asked, { role: "tool", tool_call_id: call.id, content: "warm" });
    const answer = await client.chat.completions.create({ model: "grok-4.3", messages, tools: [weather] });
    return { name: call.function.name, args: JSON.parse(call.function.arguments), answer: answer.choices[0].message.content };
  },
  async "ai-generate-object"() {
    const xai = createXai({ baseURL, apiKey });
    const { object } = await generateObject({
      model: xai("grok-4.3"),
      schema: z.object({ name: z.string(), tags: z.array(z.string()), size: z.enum(["s", "m"]) }),
      prompt: "Describe a thing.",
      maxRetries: 0,
    });
    return { object };
  },
  async "ai-stream-text-tool"() {
    const xai = createXai({ baseURL, apiKey });
    const result = streamText({
      model: xai("grok-4.3"),
      prompt: "Weather in Lima?",
      tools: {
        get_weather: tool({
          description: "The weather in a city",
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => `warm in ${city}`,
        }),
      },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    const text = await result.text;
    const steps = await result.steps;
    return { text, calls: steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)) };
  },
};

const name = process.argv[2];
const output = await cases[name]();
console.log(JSON.stringify(output));
