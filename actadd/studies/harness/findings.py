"""What each study shows, as templates its notebook fills from the run's numbers
(``study.prose(TEMPLATE, **values)``, :func:`.prose.render`): no measured number is ever typed.

Each template names its values by field (``{gain:pts}``, ``{v_gain:verdict}``; the formats are
:mod:`.prose`'s); a claim's estimate and verdict come from ``study.measured()`` under the claim's
short name (``01.layer1`` -> ``layer1``, ``v_layer1``).
"""

QUICKSTART = """On {model}, the grid (selection stream) chose layer {layer:int} at c = {coeff:num}, a vector of {norm:num} times
the residual norm there. On {n:int} fresh draws, {steered:pct} of the steered completions mention a wedding word,
against {unsteered:pct} unsteered (paired difference {wedding_gain:pts}: the claim that the vector raises the share
**{v_wedding_gain:verdict}**). In the grid, the unsteered completions have a geometric-mean perplexity of {base_ppl:num}
under {judge}, and the chosen cell {chosen_ppl:num}: the fluency a push of this size costs. Notebook 01 sweeps every
layer at the paper's c = 1 and with a tuned strength."""

WEDDING_LAYERS = """- **The paper's arm (c = 1).** On the selection stream the best of {n_layers:int} layers was layer
  {paper_layer:int} (relative norm {paper_norm:num}). On {n:int} fresh draws there, {paper_best:pct} of completions
  mention a wedding word, against {unsteered:pct} unsteered: the paper's "> 90%" claim **{v_paper_best:verdict}**, its
  "about 2% unsteered" claim **{v_unsteered:verdict}**. The paired gain is {paper_gain:pts} (**{v_paper_gain:verdict}**);
  at layer 1 it is {layer1:pts} (**{v_layer1:verdict}**).
- **Where the best layer lies.** Best layer / depth = {early_peak:num}; the paper's peak sits at 6 of 48 (0.125); the
  claim that the peak lies in the first quarter **{v_early_peak:verdict}**.
- **The tuned arm.** The probe chose layer {tuned_layer:int} at c = {tuned_coeff:num} (relative norm {tuned_norm:num}),
  and on fresh draws {tuned_best:pct} of completions mention a wedding word (**{v_tuned_best:verdict}**). Its fluency
  cost: a geometric-mean perplexity of {tuned_ppl:num} under {judge}, against {base_ppl:num} unsteered.
- **The methods that followed.** The mean-difference vector of {n_pairs:int} contrast pairs (wedding and other
  sentences), probed and tuned by the same rule, chose layer {md_layer:int} at relative norm {md_norm:num}. At the
  tuned arm's own layer and relative norm, ActAdd minus the mean difference is {meandiff:pts} (the claim that ActAdd
  does about as well or better **{v_meandiff:verdict}**). The better of the two on the selection stream, {better},
  minus prompting is {better_vs_prompting:pts} (the claim that it does about as well as prompting or better
  **{v_better_vs_prompting:verdict}**).
- **What differs from the paper.** The model ({model}, {n_layers:int} layers, for GPT-2-XL's 48), the sample sizes
  ({select:int} selection draws per layer and {n:int} confirmation draws instead of 200 per layer), and the judge of
  fluency ({judge}, which the paper did not use for this experiment).
"""

PERPLEXITY_RELEVANCE = """Layer {layer:int} ({source}); {n:int} documents of at most {max_words:int} words, half with a
wedding word; the first {masked:int} predictions of every sentence left out.

- **At the paper's c = 1** (relative norm {paper_rel:num}), the perplexity ratio on text without a wedding word is
  {unrelated:num}: the claim that it is about 1 **{v_unrelated:verdict}**. The relevance slope, length and source
  controlled, is {slope:num} nats/token per percentage point of wedding words (**{v_slope:verdict}**), and on the
  densest kept bin ({densest_bin}) the ratio is {related_below_1:num} (the claim that it falls below 1
  **{v_related_below_1:verdict}**).
- **At the tuned strength** (c = {tuned:num}, relative norm {tuned_rel:num}), the ratio on unrelated text is
  {tuned_unrelated:num} (**{v_tuned_unrelated:verdict}**): the push that steers generation reliably also changes how the
  model predicts text that has nothing to do with weddings.
- **Data.** The offline pool (Wikipedia lead sections, Brown, SpamAssassin ham, State of the Union; `data/README.md`)
  stands in for OpenWebText; the bins hold {bin_sizes}, where the paper's held over a thousand documents each.
"""

FACTUAL_RECALL = """Layer {layer:int} ({source}); {n:int} cloze prompts from Google's analogy relations (not LAMA
ConceptNet).

- **At the paper's c = 1** (relative norm {paper_rel:num}) the mean change in P@K is {negligible:pts}: the claim of a
  negligible change (within ±{margin:num} points) **{v_negligible:verdict}**. Unsteered, P@1 is {p1:num}.
- **At the tuned strength** (c = {tuned:num}, relative norm {tuned_rel:num}) it is {tuned_negligible:pts}
  (**{v_tuned_negligible:verdict}**).
- **Controls at the tuned strength.** Against {n_random:int} random directions of the same per-position norm, the
  wedding vector's change differs by {vs_random:pts} (the claim that the wedding direction costs more
  **{v_vs_random:verdict}**); against other topics' vectors of the same relative norm by {vs_topics:pts} (the claim that
  it costs like them **{v_vs_topics:verdict}**).
"""

# One line per direction of the sentiment study (values by method: :func:`.tasks.method_values`).
SENTIMENT_DIRECTION = """- **{task}.** Chosen on the selection prompts: {chosen}. On the evaluation prompts ActAdd
succeeds on {success_ActAdd:pct} of continuations, against {success_unsteered:pct} unsteered, {success_prompting:pct}
with prompting and {success_PREADD:pct} with PREADD. {sentence}. Prompts moved the wrong way against unsteered:
{wrong_way_ActAdd:pct} with ActAdd, {wrong_way_prompting:pct} with prompting, {wrong_way_PREADD:pct} with PREADD. Judge
perplexity: {perplexity_ActAdd:num} with ActAdd against {perplexity_unsteered:num} unsteered. Beside the methods that
followed: the mean-difference vector at ActAdd's layer and relative norm succeeds on {md_success:pct}, and ActAdd
minus it is {meandiff:pts} (**{v_meandiff:verdict}**); the better steering method on
the selection ({better}) minus prompting is {better_vs_prompting:pts} (**{v_better_vs_prompting:verdict}**)."""

SENTIMENT = """Steered model: {model}. Prompts: {n_eval:int} evaluation prompts per direction ({n_samples:int} samples
each, {tokens:int} new tokens) and {n_select:int} selection prompts per direction; of all of them {shares}. Fluency
judged by another model, {judge}.
- **The sentiment scorer.** By the rule ({rule}), success is judged by {scorer}: {accuracy_tweets:pct} accuracy on
  {n_tweets:int} held-out tweets and {accuracy_pang_lee:pct} on {n_pang_lee:int} Pang-Lee sentences. The runner-up,
  {second} ({accuracy_second:pct} on the tweets), labels the same way on {agreement:pct} of the {n_judged:int} evaluated
  continuations (Cohen's kappa {kappa:num}; Spearman {spearman:num}): a verdict that turns on a few points of success
  can turn on the scorer.
{directions}
- **Asymmetry.** ActAdd's negative→positive success minus its positive→negative success: {asymmetry:pts}; the
  paper's claim that negative-to-positive is easier **{v_asymmetry:verdict}**.
- **Where the substitutes change the comparison.** The model is {model}, not LLaMA-3 or OPT; the prompts are mostly
  short informal tweets rather than IMDb reviews, so 32 tokens is often the whole text; success is judged by {scorer},
  not by the paper's scorer; the prompting and PREADD instructions are this study's own wording.
"""

DETOX = """Steered model: {model}. Prompts: {n_eval:int} evaluation prompts ({n_samples:int} samples each, {tokens:int}
new tokens) and {n_select:int} selection prompts, built the way RealToxicityPrompts was built from {shares}. Toxicity
by {scorer}; fluency judged by another model, {judge}.
- **Chosen on the selection prompts.** {chosen}.
- **Expected maximum toxicity.** ActAdd {expected_max_toxicity_ActAdd:num} against
  {expected_max_toxicity_unsteered:num} unsteered, {expected_max_toxicity_prompting:num} with prompting and
  {expected_max_toxicity_PREADD:num} with PREADD. {max_sentence}.
- **Toxicity probability.** ActAdd {toxicity_probability_ActAdd:pct} of prompts with a sample at or above
  {threshold:num}, against {toxicity_probability_unsteered:pct} unsteered, {toxicity_probability_prompting:pct} with
  prompting and {toxicity_probability_PREADD:pct} with PREADD; {any_sentence}.
- **Fluency cost.** ActAdd's judge perplexity is {fluency:num} times the unsteered one ({perplexity_ActAdd:num} against
  {perplexity_unsteered:num}; the claim of similar fluency **{v_fluency:verdict}**); PREADD's is
  {perplexity_PREADD:num}.
- **The methods that followed.** At ActAdd's layer and relative norm, ActAdd minus the mean-difference vector of
  contrast pairs is {max_toxicity_meandiff:num} in expected maximum toxicity (the claim that ActAdd is about as low
  or lower **{v_max_toxicity_meandiff:verdict}**); the better steering method on the selection ({better}) minus prompting
  is {max_toxicity_better_vs_prompting:num} (**{v_max_toxicity_better_vs_prompting:verdict}**).
- **Per prompt.** ActAdd raises the maximum toxicity of {wrong_way_ActAdd:pct} of prompts against unsteered decoding
  (prompting {wrong_way_prompting:pct}, PREADD {wrong_way_PREADD:pct}).
- **A second classifier.** {second} (P(toxic) of a bidirectional LSTM trained on the Jigsaw toxic comments: another
  model than {scorer}'s, though both learned from Jigsaw data) labels the same way as {scorer} on {agreement:pct} of the {n_judged:int} evaluated continuations at 0.5 (Cohen's kappa
  {kappa:num}; Spearman {spearman:num}). Under it, ActAdd minus unsteered expected maximum toxicity is
  {second_unsteered:num}, minus prompting {second_prompting:num} and minus PREADD {second_PREADD:num}.
- **Where the substitutes change the comparison.** The model is {model}, not LLaMA-3 or OPT; the prompts are shorter and
  milder than RealToxicityPrompts' web text, so there is less toxicity for any method to remove; toxicity is
  {scorer}'s, not the Perspective API's; {n_samples:int} samples per prompt instead of 25 make expected maximum toxicity
  and toxicity probability lower for every method alike; FUDGE, AirDecoding and SelfDebias are not run.
"""

OVERHEAD = """At {threads:int} CPU thread(s), {n_pairs:int} paired passes per model:

- **Batch 1 x {seq_len:int}.** The median premium ranges from {lo:pct} to {hi:pct} over the models (ratio of mean
  times: {mlo:pct} to {mhi:pct}); on the {largest} shape it is {batch1_largest:pct}: the claim that it is small (within
  {margin:pct}) **{v_batch1_largest:verdict}**. Largest minus smallest: {falls_with_size:pct} (the claim that the
  premium falls with size **{v_falls_with_size:verdict}**). The nnsight path costs {hook_lo:num}x to {hook_hi:num}x a
  plain torch hook doing the same addition: what premium there is is nnsight's fixed cost per forward call, not the
  addition.
- **The paper's batch ({batch:int} x {seq_len:int}).** {paper_text}
- **Steered generation** runs at {gen:num}x the throughput of the model's own unsteered `generate` with the same
  sampler.
- **What differs from the paper.** The GPT-2 models are random-weight shapes timed on a CPU, not trained models on a
  GPU; the XL shape and the paper's 100 passes are left to the paper profile.
"""

OVERHEAD_PAPER_BATCH = """On the {name} shape the median premium is {paper_batch:pct} (ratio of means {means:pct}): the
claim that it is small **{v_paper_batch:verdict}**."""
