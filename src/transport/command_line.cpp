#include "transport/command_line.hpp"

#include <algorithm>

#include "bokbok/error.hpp"

namespace bokbok::transport {

namespace {

[[noreturn]] void bad(std::string_view address, std::string_view why) {
  throw address_error("bokbok: bad address \"" + std::string(address) + "\": " + std::string(why));
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

}  // namespace

std::vector<std::string> split_command(std::string_view text, std::string_view address) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;  // a word has started (it may be empty: '')
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (is_blank(c)) {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\\') {
      if (++i == text.size()) bad(address, "the command ends with a lone backslash");
      word += text[i];
    } else if (c == '\'') {
      auto end = text.find('\'', i + 1);
      if (end == std::string_view::npos) bad(address, "a ' quote in the command is not closed");
      word.append(text.substr(i + 1, end - i - 1));
      i = end;
    } else if (c == '"') {
      for (++i;; ++i) {
        if (i == text.size()) bad(address, "a \" quote in the command is not closed");
        char d = text[i];
        if (d == '"') break;
        if (d == '\\' && i + 1 < text.size() &&
            std::string_view("\"\\$`").find(text[i + 1]) != std::string_view::npos)
          d = text[++i];
        word += d;
      }
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

std::string shell_quote(std::string_view word) {
  auto safe = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_-./:=@%+,").find(c) != std::string_view::npos;
  };
  if (!word.empty() && std::all_of(word.begin(), word.end(), safe)) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'')
      out += "'\\''";  // close the quote, an escaped quote, reopen
    else
      out += c;
  }
  return out + "'";
}

std::string shell_join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += shell_quote(w);
  }
  return out;
}

}  // namespace bokbok::transport
