#include "chunk_commands.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "common.h"
#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "kvcache/size.h"

namespace kvcache::cli {
namespace {

Result<std::string> ReadFileText(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(fmt::format("cannot open {} '{}'", what, path));
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) return Status::IOError(fmt::format("cannot read {} '{}'", what, path));
  return text;
}

Result<std::vector<uint32_t>> ReadTokens(const TokenSource& source) {
  if (source.tokens.empty() == source.tokens_file.empty()) {
    return Status::InvalidArgument("give the tokens with exactly one of --tokens and --tokens-file");
  }
  std::string text = source.tokens;
  if (!source.tokens_file.empty()) {
    KVC_ASSIGN_OR_RETURN(text, ReadFileText(source.tokens_file, "tokens file"));
  }
  KVC_ASSIGN_OR_RETURN(std::vector<uint32_t> tokens, ParseTokenList(text));
  if (tokens.empty()) return Status::InvalidArgument("no tokens given");
  return tokens;
}

void AddTokenOptions(CLI::App* sub, TokenSource& source) {
  sub->add_option("--tokens", source.tokens, "The tokens, e.g. 1,2,3");
  sub->add_option("--tokens-file", source.tokens_file,
                  "A file holding the tokens (comma or space separated, or a JSON array)");
}

}  // namespace

void SetupChunkCommands(CLI::App& cache) {
  auto match = std::make_shared<MatchCommandOptions>();
  CLI::App* sub = cache.add_subcommand(
      "match", "How many leading tokens of a prompt are cached as chunks");
  sub->add_option("name", match->name, "Pool name")->required();
  AddTokenOptions(sub, match->source);
  sub->add_option("--namespace", match->name_space,
                  "Namespace of the chunks: model, dtype, rank, adapter... (default: empty)");
  sub->add_flag("--json", match->json, "Print JSON");
  sub->callback([match] { Finish(RunMatch(*match)); });

  auto put = std::make_shared<PutChunksCommandOptions>();
  sub = cache.add_subcommand("put-chunks",
                             "Store a file as the consecutive chunks of a token sequence");
  sub->add_option("name", put->name, "Pool name")->required();
  AddTokenOptions(sub, put->source);
  sub->add_option("--file,-f", put->file,
                  "The chunks' bytes, one after the other, in equal sizes")
      ->required();
  sub->add_option("--namespace", put->name_space, "Namespace of the chunks (default: empty)");
  sub->callback([put] { Finish(RunPutChunks(*put)); });
}

int RunMatch(const MatchCommandOptions& opts) {
  Result<std::vector<uint32_t>> tokens = ReadTokens(opts.source);
  if (!tokens.ok()) return Fail(tokens.status());
  Manager manager;
  Result<ChunkMatch> match = manager.Match(opts.name, opts.name_space, *tokens);
  if (!match.ok()) return Fail(match.status());
  if (opts.json) {
    nlohmann::json j;
    j["pool"] = opts.name;
    j["namespace"] = opts.name_space;
    j["tokens"] = tokens->size();
    j["matched_tokens"] = match->matched_tokens;
    j["chunks"] = match->chunks.size();
    j["chunk_tokens"] = match->chunk_tokens;
    PrintLine(j.dump());
    return kExitOk;
  }
  PrintLine(fmt::format("Matched {} of {} tokens in '{}' ({} chunks of {} tokens)",
                        match->matched_tokens, tokens->size(), opts.name,
                        match->chunks.size(), match->chunk_tokens));
  return kExitOk;
}

int RunPutChunks(const PutChunksCommandOptions& opts) {
  Result<std::vector<uint32_t>> tokens = ReadTokens(opts.source);
  if (!tokens.ok()) return Fail(tokens.status());
  Manager manager;
  Result<PoolConfig> config = manager.GetConfig(opts.name);
  if (!config.ok()) return Fail(config.status());
  const uint64_t chunk_tokens = config->prefix_block_tokens;
  const uint64_t count = tokens->size() / chunk_tokens;
  if (count == 0) {
    return Fail(fmt::format("{} tokens make no whole chunk: pool '{}' holds chunks of {} tokens",
                            tokens->size(), opts.name, chunk_tokens));
  }
  Result<std::string> bytes = ReadFileText(opts.file, "file");
  if (!bytes.ok()) return Fail(bytes.status());
  if (bytes->size() % count != 0) {
    return Fail(fmt::format("'{}' holds {} bytes, which do not split into {} equal chunks",
                            opts.file, bytes->size(), count));
  }
  const size_t each = bytes->size() / count;
  const auto* base = reinterpret_cast<const std::byte*>(bytes->data());
  std::vector<std::span<const std::byte>> chunks;
  for (uint64_t c = 0; c < count; ++c) chunks.emplace_back(base + c * each, each);
  Result<ChunkStoreResult> stored = manager.StoreChunks(opts.name, opts.name_space, *tokens, chunks);
  if (!stored.ok()) return Fail(stored.status());
  std::string rest;
  if (uint64_t left = tokens->size() - count * chunk_tokens; left > 0) {
    rest = fmt::format("; the last {} tokens are no whole chunk and were not stored", left);
  }
  PrintLine(fmt::format("Stored {} chunks of {} tokens in '{}' ({} new, {} already cached, {} each){}",
                        count, chunk_tokens, opts.name, stored->stored, stored->present,
                        FormatSizeLong(each), rest));
  return kExitOk;
}

}  // namespace kvcache::cli
