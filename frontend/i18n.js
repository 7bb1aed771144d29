// The wall's words: one message table, looked up with t(key, params). Each key holds its text in
// every language side by side ({ en: "...", "zh-CN": "..." }), so a translation sits next to the
// English it translates; tests/test_wall_i18n.py fails on a key missing a language, on a key the
// code uses that the table lacks, and on a placeholder that differs between languages.
// Placeholders are {name}, filled from params. The page's static text carries data-i18n (its
// key), data-i18n-title and data-i18n-aria; translatePage() writes them in the language chosen.
// The language is remembered in localStorage; plans' own Chinese fields (title_zh, name_zh) are
// picked by localized().

export const LANGUAGES = ["zh-CN", "en"];
const FALLBACK = "en";
const LANGUAGE_KEY = "rallypoint.language";

export const MESSAGES = {
  // -- the header, the page ------------------------------------------------------------------
  "bar.sites": { en: "Sites", "zh-CN": "切换厂区" },
  "bar.sign_out": { en: "Sign out", "zh-CN": "退出登录" },
  "language.label": { en: "Language", "zh-CN": "语言" },
  "sound.title": { en: "Alarm tone on this wall: on or muted", "zh-CN": "本屏报警音：开启或静音" },
  "sound.on": { en: "Tone on", "zh-CN": "报警音开" },
  "sound.muted": { en: "Tone muted", "zh-CN": "报警音已静音" },
  "sound.blocked": { en: "Tone blocked: click to allow", "zh-CN": "报警音被浏览器阻止：点击允许" },
  "clock.label": { en: "Site time", "zh-CN": "厂区时间" },
  "map.label": { en: "Site map", "zh-CN": "厂区地图" },
  "kpi.region": { en: "Key figures", "zh-CN": "关键指标" },
  // the connection badge (its data-state is the key's last part)
  "status.offline": { en: "offline", "zh-CN": "离线" },
  "status.connecting": { en: "connecting", "zh-CN": "连接中" },
  "status.reconnecting": { en: "reconnecting", "zh-CN": "重新连接中" },
  "status.live": { en: "live", "zh-CN": "实时" },
  "status.resync": { en: "resync", "zh-CN": "重新同步" },
  "status.retry_in": { en: "offline: retry in {seconds} s", "zh-CN": "离线：{seconds} 秒后重试" },
  // signing in and choosing a site
  "login.title": { en: "Sign in", "zh-CN": "登录" },
  "login.username": { en: "Username", "zh-CN": "用户名" },
  "login.password": { en: "Password", "zh-CN": "密码" },
  "login.submit": { en: "Sign in", "zh-CN": "登录" },
  "sites.title": { en: "Choose a site", "zh-CN": "选择厂区" },
  "session.ended": { en: "Your session has ended: sign in again.", "zh-CN": "会话已结束，请重新登录。" },
  "login.wrong": { en: "Wrong username or password.", "zh-CN": "用户名或密码错误。" },
  "login.too_many": { en: "Too many failed sign-ins: try again in {wait}.", "zh-CN": "登录失败次数过多，请在{wait}后重试。" },
  "login.a_while": { en: "a while", "zh-CN": "稍后" },
  "login.failed": { en: "Sign-in failed: {detail}", "zh-CN": "登录失败：{detail}" },
  "sites.cannot_list": { en: "Cannot list sites: {detail}", "zh-CN": "无法列出厂区：{detail}" },
  "sites.none": { en: "There is no site yet.", "zh-CN": "还没有任何厂区。" },
  "sites.choice": { en: "{name} ({id})", "zh-CN": "{name}（{id}）" },
  "site.cannot_load": { en: "Cannot load the site: {detail}", "zh-CN": "无法加载厂区：{detail}" },
  "wall.role_refused": { en: "Your role may not watch the wall.", "zh-CN": "您的角色无权查看大屏。" },
  // kiosk walls (a wall token in the URL: no sign-in)
  "kiosk.revoked": { en: "This wall's token was refused", "zh-CN": "本大屏的令牌已被拒绝" },
  "kiosk.revoked_detail": {
    en: "The token was revoked or is wrong. Ask an administrator for a new wall link (rallypoint wall add).",
    "zh-CN": "令牌已被吊销或无效。请管理员重新签发大屏链接（rallypoint wall add）。",
  },
  "kiosk.forbidden": { en: "This wall may not show this site", "zh-CN": "本大屏无权显示该厂区" },
  "kiosk.no_site": { en: "The wall's site cannot be found", "zh-CN": "找不到本大屏对应的厂区" },
  "kiosk.waiting": { en: "Waiting for the server…", "zh-CN": "正在等待服务器……" },
  // talking to the server
  "server.unreachable": { en: "The server could not be reached: {detail}", "zh-CN": "无法连接服务器：{detail}" },
  // durations and times
  "punct.stop": { en: ".", "zh-CN": "。" },
  "duration.none": { en: "–", "zh-CN": "–" },
  "duration.seconds": { en: "{s} s", "zh-CN": "{s} 秒" },
  "duration.minutes": { en: "{min} min {s} s", "zh-CN": "{min} 分 {s} 秒" },
  "duration.hours": { en: "{h} h {min} min", "zh-CN": "{h} 小时 {min} 分" },
  "time.ago": { en: "{duration} ago", "zh-CN": "{duration}前" },
  "time.in": { en: "in {duration}", "zh-CN": "剩余 {duration}" },
  "time.late": { en: "{duration} late", "zh-CN": "已超时 {duration}" },

  // -- levels: response levels (the plan's) and threat levels (the hazard's) never share a name
  "response.L1": { en: "L1 · team", "zh-CN": "L1 · 班组级" },
  "response.L2": { en: "L2 · workshop", "zh-CN": "L2 · 车间级" },
  "response.L3": { en: "L3 · plant", "zh-CN": "L3 · 厂级" },
  "response.L4": { en: "L4 · group", "zh-CN": "L4 · 集团级" },
  "response.badge": { en: "Response {level}", "zh-CN": "响应 {level}" },
  "threat.meaning.3": { en: "life-threatening", "zh-CN": "生命威胁" },
  "threat.meaning.2": { en: "serious harm", "zh-CN": "严重伤害" },
  "threat.meaning.1": { en: "noticeable effects", "zh-CN": "轻微影响" },
  "threat.unnamed": { en: "Threat zone {level}", "zh-CN": "威胁区 {level}" },
  "threat.name": { en: "{criterion} · {meaning}", "zh-CN": "{criterion} · {meaning}" },
  "risk.red": { en: "Risk grade: major (red)", "zh-CN": "风险等级：重大（红）" },
  "risk.orange": { en: "Risk grade: high (orange)", "zh-CN": "风险等级：较大（橙）" },
  "risk.yellow": { en: "Risk grade: moderate (yellow)", "zh-CN": "风险等级：一般（黄）" },
  "risk.blue": { en: "Risk grade: low (blue)", "zh-CN": "风险等级：低（蓝）" },
  "tier.warning": { en: "Warning", "zh-CN": "预警" },
  "tier.alarm": { en: "ALARM", "zh-CN": "报警" },
  "tier.high_alarm": { en: "HIGH ALARM", "zh-CN": "高高报警" },
  "tier.normal": { en: "normal", "zh-CN": "正常" },

  // -- key figures ------------------------------------------------------------------------------
  "kpi.to_move": { en: "To move", "zh-CN": "需撤离" },
  "kpi.arrived": { en: "Arrived", "zh-CN": "已到达" },
  "kpi.missing": { en: "Not yet at a muster point", "zh-CN": "未到集合点" },
  "kpi.trapped": { en: "Trapped: no safe route", "zh-CN": "被困：无安全路线" },
  "kpi.threat": { en: "In {name}", "zh-CN": "处于{name}" },
  "kpi.overdue": { en: "Overdue steps", "zh-CN": "超时步骤" },
  "kpi.unanswered": { en: "Unanswered call-outs", "zh-CN": "未应答通知" },
  "kpi.open": { en: "Show the list: {label}", "zh-CN": "查看列表：{label}" },

  // -- the incident card ------------------------------------------------------------------------
  "incident.none": { en: "No active incident.", "zh-CN": "当前没有进行中的事件。" },
  "incident.switch": { en: "Incidents", "zh-CN": "事件" },
  "incident.since": { en: "{elapsed} since activation at {time}", "zh-CN": "启动于 {time}，已过 {elapsed}" },
  "incident.by": { en: "by {who}", "zh-CN": "启动人 {who}" },
  "incident.hazard": { en: "Hazard: {what}", "zh-CN": "危害：{what}" },
  "wind.none": { en: "Wind: no station has reported", "zh-CN": "风：尚无气象站数据" },
  "wind.line": { en: "Wind {speed} m/s from {compass} ({deg}°)", "zh-CN": "风速 {speed} 米/秒，{compass}风（{deg}°）" },
  "wind.source": { en: "{station}, {age}", "zh-CN": "{station}，{age}" },
  "wind.incident": { en: "as used by the plume", "zh-CN": "烟羽模型所用" },
  "wind.arrow": { en: "Wind: blows towards the arrow", "zh-CN": "风向：箭头指向下风方向" },
  "compass.N": { en: "N", "zh-CN": "北" },
  "compass.NE": { en: "NE", "zh-CN": "东北" },
  "compass.E": { en: "E", "zh-CN": "东" },
  "compass.SE": { en: "SE", "zh-CN": "东南" },
  "compass.S": { en: "S", "zh-CN": "南" },
  "compass.SW": { en: "SW", "zh-CN": "西南" },
  "compass.W": { en: "W", "zh-CN": "西" },
  "compass.NW": { en: "NW", "zh-CN": "西北" },
  "tab.steps": { en: "Steps", "zh-CN": "处置步骤" },
  "tab.people": { en: "People", "zh-CN": "人员" },
  "tab.resources": { en: "Resources", "zh-CN": "资源" },
  "tab.calltree": { en: "Call tree", "zh-CN": "通知树" },
  "tab.log": { en: "Log", "zh-CN": "重要事件" },
  "tab.command": { en: "Command", "zh-CN": "指挥" },
  "tab.count": { en: "{label} ({count})", "zh-CN": "{label}（{count}）" },

  // steps
  "step.status.waiting": { en: "waiting", "zh-CN": "等待" },
  "step.status.ready": { en: "ready", "zh-CN": "待执行" },
  "step.status.acknowledged": { en: "acknowledged", "zh-CN": "已确认" },
  "step.status.in_progress": { en: "in progress", "zh-CN": "进行中" },
  "step.status.done": { en: "done", "zh-CN": "已完成" },
  "step.status.skipped": { en: "skipped", "zh-CN": "已跳过" },
  "step.status.failed": { en: "failed", "zh-CN": "失败" },
  "step.due": { en: "due {time}", "zh-CN": "时限 {time}" },
  "step.no_deadline": { en: "no deadline", "zh-CN": "无时限" },
  "step.overdue": { en: "OVERDUE", "zh-CN": "已超时" },
  "step.meta": { en: "{role} · {level} · {due}", "zh-CN": "{role} · {level} · {due}" },

  // people
  "people.headcount": { en: "Headcount by muster point", "zh-CN": "各集合点清点" },
  "people.site_total": { en: "{accounted} of {on_site} on site are at muster points", "zh-CN": "在厂 {on_site} 人，{accounted} 人已在集合点" },
  "people.muster_row": { en: "{name}: {arrived} arrived of {expected} expected", "zh-CN": "{name}：应到 {expected} 人，已到 {arrived} 人" },
  "people.muster_extra": { en: "{count} more there not sent by this incident", "zh-CN": "另有 {count} 人不属本次撤离" },
  "people.missing": { en: "Not yet at a muster point", "zh-CN": "未到集合点人员" },
  "people.missing_none": { en: "Everyone who had to move has arrived.", "zh-CN": "需撤离人员已全部到达。" },
  "people.trapped": { en: "Trapped: no safe route", "zh-CN": "被困人员：无安全路线" },
  "people.trapped_none": { en: "Nobody is without a safe route.", "zh-CN": "没有无安全路线的人员。" },
  "people.trapped_row": { en: "{id}: {why}", "zh-CN": "{id}：{why}" },
  "people.exposed": { en: "Inside the threat zones", "zh-CN": "威胁区内" },
  "people.exposed_row": { en: "{name}: {people} people", "zh-CN": "{name}：{people} 人" },
  "people.receptors": { en: "Sensitive receptors inside", "zh-CN": "区内敏感目标" },
  "people.receptor_row": { en: "{name} ({kind}, about {population} people)", "zh-CN": "{name}（{kind}，约 {population} 人）" },
  "people.receptors_none": { en: "No school, hospital or residential area inside the zones.", "zh-CN": "威胁区内无学校、医院或居民区。" },
  "people.more": { en: "…and {count} more", "zh-CN": "……另有 {count} 人" },
  "receptor.school": { en: "school", "zh-CN": "学校" },
  "receptor.hospital": { en: "hospital", "zh-CN": "医院" },
  "receptor.clinic": { en: "clinic", "zh-CN": "诊所" },
  "receptor.kindergarten": { en: "kindergarten", "zh-CN": "幼儿园" },
  "receptor.residential": { en: "residential area", "zh-CN": "居民区" },
  "receptor.care_home": { en: "care home", "zh-CN": "养老院" },
  "receptor.other": { en: "receptor", "zh-CN": "敏感目标" },

  // resources
  "resources.nearest": { en: "Nearest resources", "zh-CN": "最近资源" },
  "resources.row": { en: "{kind}: {name}, {time} ({mode})", "zh-CN": "{kind}：{name}，{time}（{mode}）" },
  "resources.none": { en: "No resource reachable.", "zh-CN": "无可到达的资源。" },
  "resources.unreachable": { en: "Unreachable: {kinds}", "zh-CN": "无法到达：{kinds}" },
  "mode.walk": { en: "on foot", "zh-CN": "步行" },
  "mode.drive": { en: "by vehicle", "zh-CN": "车辆" },

  // the call tree
  "calltree.loading": { en: "Reading the call tree…", "zh-CN": "正在读取通知树……" },
  "calltree.none": { en: "No call-outs for this incident.", "zh-CN": "本事件没有通知。" },
  "calltree.error": { en: "Cannot read the call tree: {detail}", "zh-CN": "无法读取通知树：{detail}" },
  "calltree.row": { en: "{role}: {contact}", "zh-CN": "{role}：{contact}" },
  "calltree.fallback": { en: "fallback", "zh-CN": "备用联系人" },
  "calltree.status.waiting": { en: "waiting for an answer", "zh-CN": "等待应答" },
  "calltree.status.delivered": { en: "delivered, not answered", "zh-CN": "已送达，未应答" },
  "calltree.status.failed": { en: "delivery failed", "zh-CN": "发送失败" },
  "calltree.status.acknowledged": { en: "answered", "zh-CN": "已应答" },
  "calltree.status.passed_on": { en: "no answer: passed on", "zh-CN": "未应答：已转备用联系人" },
  "calltree.status.unanswered": { en: "UNANSWERED: nobody left to call", "zh-CN": "无人应答：已无可联系人" },
  "calltree.answered_by": { en: "answered {at} by {by} via {channel}", "zh-CN": "{at} 由 {by} 通过{channel}应答" },
  "calltree.due": { en: "answer due {time}", "zh-CN": "应答时限 {time}" },
  "calltree.on_behalf": { en: "Answered for them…", "zh-CN": "代为应答……" },
  "calltree.channel": { en: "Reached by", "zh-CN": "联系方式" },
  "calltree.confirm": { en: "Record the answer", "zh-CN": "记录应答" },
  "calltree.refused": { en: "Not recorded: {detail}", "zh-CN": "未记录：{detail}" },
  "channel.phone": { en: "phone", "zh-CN": "电话" },
  "channel.sms": { en: "SMS", "zh-CN": "短信" },
  "channel.radio": { en: "radio", "zh-CN": "对讲机" },
  "channel.in_person": { en: "in person", "zh-CN": "当面" },
  "channel.app": { en: "the app", "zh-CN": "应用" },
  "channel.link": { en: "their call-out link", "zh-CN": "通知链接" },

  // the significant-events log
  "log.activated": { en: "{who} activated {plan} at {level}", "zh-CN": "{who} 以 {level} 启动 {plan}" },
  "log.escalated": { en: "{who} escalated to {level}", "zh-CN": "{who} 升级至 {level}" },
  "log.deescalated": { en: "{who} de-escalated to {level}", "zh-CN": "{who} 降级至 {level}" },
  "log.wind_changed": { en: "Wind changed: zones redrawn, {rerouted} people rerouted", "zh-CN": "风向变化：威胁区已重算，{rerouted} 人重新规划路线" },
  "log.note": { en: "Note by {who}: {text}", "zh-CN": "{who} 记录：{text}" },
  "log.step_overdue": { en: "Step overdue: {step}", "zh-CN": "步骤超时：{step}" },
  "log.step_failed": { en: "Step failed: {step} ({reason})", "zh-CN": "步骤失败：{step}（{reason}）" },
  "log.step_skipped": { en: "Step skipped by {who}: {step} ({reason})", "zh-CN": "{who} 跳过步骤：{step}（{reason}）" },
  "log.unanswered": { en: "Call-out unanswered: {role}", "zh-CN": "通知无人应答：{role}" },
  "log.acknowledged": { en: "Call-out answered: {role} ({channel})", "zh-CN": "通知已应答：{role}（{channel}）" },
  "log.network": { en: "Site layers changed: {rerouted} people rerouted", "zh-CN": "厂区图层变更：{rerouted} 人重新规划路线" },
  "log.duty": { en: "{username} holds {role}", "zh-CN": "{username} 担任 {role}" },

  // command actions
  "command.escalate": { en: "Escalate to {level}", "zh-CN": "升级至 {level}" },
  "command.deescalate": { en: "De-escalate to {level}", "zh-CN": "降级至 {level}" },
  "command.stand_down": { en: "Stand down", "zh-CN": "解除应急" },
  "command.top": { en: "Already at the highest level", "zh-CN": "已是最高响应级别" },
  "command.bottom": { en: "Already at the lowest level", "zh-CN": "已是最低响应级别" },
  "command.confirm_escalate": { en: "Escalate this incident to {level}? Its steps and call tree start now.", "zh-CN": "确认将本事件升级至 {level}？该级别的步骤和通知将立即开始。" },
  "command.confirm_deescalate": { en: "De-escalate to {level}? The unfinished steps of {from} are withdrawn.", "zh-CN": "确认降级至 {level}？{from} 未完成的步骤将被撤回。" },
  "command.confirm_stand_down": { en: "Stand this incident down? It closes for every wall.", "zh-CN": "确认解除本事件应急？所有大屏将关闭该事件。" },
  "command.force": { en: "Stand down anyway", "zh-CN": "仍然解除" },
  "command.reason": { en: "Reason", "zh-CN": "原因" },
  "command.reason_required": { en: "Say why: it is logged with the order.", "zh-CN": "请说明原因：将与指令一同记录。" },
  "command.yes": { en: "Confirm", "zh-CN": "确认" },
  "command.cancel": { en: "Cancel", "zh-CN": "取消" },
  "command.refused": { en: "Refused: {detail}", "zh-CN": "被拒绝：{detail}" },
  "command.done": { en: "Done: {what}", "zh-CN": "已执行：{what}" },
  "note.label": { en: "Note for the log", "zh-CN": "记录内容" },
  "note.add": { en: "Add note", "zh-CN": "添加记录" },
  "note.added": { en: "Note logged.", "zh-CN": "记录已保存。" },
  "note.refused": { en: "Note not logged: {detail}", "zh-CN": "记录未保存：{detail}" },

  // alarms
  "alarm.region": { en: "Alarms", "zh-CN": "报警" },
  "alarm.title": { en: "{tier}: {sensor}", "zh-CN": "{tier}：{sensor}" },
  "alarm.detail": { en: "{substance} {value} since {time}", "zh-CN": "{substance} {value}，自 {time} 起" },
  "alarm.cleared": { en: "back to normal, not yet acknowledged", "zh-CN": "已恢复正常，尚未确认" },
  "alarm.acknowledge": { en: "Acknowledge", "zh-CN": "确认报警" },
  "alarm.acknowledge_title": { en: "Acknowledge the alarm of {sensor}: logged with your name", "zh-CN": "确认 {sensor} 的报警：将记录您的姓名" },
  "alarm.ack_refused": { en: "Not acknowledged: {detail}", "zh-CN": "未确认：{detail}" },
  "alarm.running": { en: "{plan}: already running as incident {incident}", "zh-CN": "{plan}：已作为事件 {incident} 运行" },
  "alarm.review": { en: "Review first", "zh-CN": "先核对" },
  "alarm.activate": { en: "Activate {plan} at {level}", "zh-CN": "以 {level} 启动 {plan}" },
  "alarm.not_activated_panel": { en: "Not activated: see the activation panel.", "zh-CN": "未启动：请查看启动面板。" },
  "alarm.todo_wind": { en: "Type the wind (speed, and where it comes from) in the activation panel, then Activate again.", "zh-CN": "请在启动面板中输入风速和风向，然后再次启动。" },
  "alarm.todo_fields": { en: "Complete the fields marked in the activation panel, then Activate again.", "zh-CN": "请补全启动面板中标出的字段，然后再次启动。" },
  "alarm.unknown_place": { en: "position unknown: click the map", "zh-CN": "位置未知：请在地图上点选" },

  // the legend
  "legend.title": { en: "Legend", "zh-CN": "图例" },
  "legend.threat": { en: "Threat zones", "zh-CN": "威胁区" },
  "legend.cone": { en: "Wind direction uncertainty", "zh-CN": "风向不确定范围" },
  "legend.source": { en: "Release point", "zh-CN": "泄漏点" },
  "legend.risk": { en: "Site risk grades", "zh-CN": "厂区风险分级" },
  "legend.muster": { en: "Muster point", "zh-CN": "集合点" },
  "legend.muster_unusable": { en: "Muster point not used", "zh-CN": "停用的集合点" },
  "legend.moving": { en: "Person to move", "zh-CN": "待撤离人员" },
  "legend.arrived": { en: "Person arrived", "zh-CN": "已到达人员" },
  "legend.trapped": { en: "Trapped person", "zh-CN": "被困人员" },
  "legend.route": { en: "Evacuation route", "zh-CN": "疏散路线" },
  "legend.escape": { en: "Way out of the inner zone", "zh-CN": "内区撤出路线" },
  "legend.resource": { en: "Nearest resource and its route", "zh-CN": "最近资源及路线" },
  "legend.detector": { en: "Detector (colour: its tier)", "zh-CN": "探测器（颜色表示报警级别）" },
  "legend.receptor": { en: "School, hospital, homes", "zh-CN": "学校、医院、居民区" },
  "legend.basemap": { en: "Roads, buildings, water outside the fence", "zh-CN": "厂外道路、建筑、水系" },

  // map tooltips
  "map.muster": { en: "Muster point: {name}", "zh-CN": "集合点：{name}" },
  "map.zone": { en: "{name} ({kind}, {grade})", "zh-CN": "{name}（{kind}，{grade}）" },
  "map.source": { en: "Release point: {plan}", "zh-CN": "泄漏点：{plan}" },
  "map.muster_unusable": { en: "{name}: not used — {why}", "zh-CN": "{name}：停用——{why}" },
  "map.muster_warning": { en: "{name}: {why}", "zh-CN": "{name}：{why}" },
  "map.person_trapped": { en: "{id}: TRAPPED, no safe route", "zh-CN": "{id}：被困，无安全路线" },
  "map.person_route": { en: "{id} → {muster}, {time} on foot", "zh-CN": "{id} → {muster}，步行 {time}" },
  "map.person_arrived": { en: "{id}: arrived at {muster}", "zh-CN": "{id}：已到达 {muster}" },
  "map.sensor": { en: "{name} ({substance}): {tier}", "zh-CN": "{name}（{substance}）：{tier}" },
  "map.receptor": { en: "{name}: {kind}, about {population} people", "zh-CN": "{name}：{kind}，约 {population} 人" },

  // muster verdicts, layer changes, notes (the incident card)
  "verdict.no_muster": { en: "No usable muster point. {what}", "zh-CN": "没有可用的集合点。{what}" },
  "verdict.shelter": { en: "Shelter in place: {text}", "zh-CN": "就地避难：{text}" },
  "verdict.no_shelter": { en: "The plan gives no shelter-in-place instruction.", "zh-CN": "预案未给出就地避难指引。" },
  "verdict.unusable": { en: "{name}: not used — {why}", "zh-CN": "{name}：停用——{why}" },
  "verdict.warning": { en: "{name}: {why}", "zh-CN": "{name}：{why}" },
  "layers.changed": { en: "Site layers changed at {time} ({layers}): routes planned again, {rerouted} people rerouted.", "zh-CN": "厂区图层于 {time} 变更（{layers}）：已重新规划路线，{rerouted} 人改道。" },
  "layers.failed": { en: "Site layers changed at {time} ({layers}): the incident could not be planned on them ({error}); the last picture is kept.", "zh-CN": "厂区图层于 {time} 变更（{layers}）：无法据此规划（{error}），保留上一版态势。" },
  "notes.title": { en: "Threat zone notes ({count})", "zh-CN": "威胁区说明（{count}）" },
  "recovery.progress": { en: "Server restarted: rebuilding incidents from the log, {done} of {total} done", "zh-CN": "服务器已重启：正在从日志重建事件，已完成 {done}/{total}" },
  "recovery.quarantined": { en: "Incident {id} is quarantined and not shown: {reason}. Check the log with 'rallypoint audit verify'.", "zh-CN": "事件 {id} 已隔离，不予显示：{reason}。请用 'rallypoint audit verify' 检查日志。" },

  // duties
  "duty.title": { en: "Duties", "zh-CN": "职责分工" },
  "duty.role": { en: "Role", "zh-CN": "角色" },
  "duty.username": { en: "Username", "zh-CN": "用户名" },
  "duty.assign": { en: "Assign", "zh-CN": "指派" },
  "duty.release": { en: "Release", "zh-CN": "解除" },
  "duty.release_title": { en: "Release {username} from {role}", "zh-CN": "解除 {username} 的 {role} 职责" },
  "duty.none": { en: "No duties assigned yet.", "zh-CN": "尚未指派职责。" },
  "duty.not_assigned": { en: "Not assigned: {detail}", "zh-CN": "未指派：{detail}" },
  "duty.not_released": { en: "Not released: {detail}", "zh-CN": "未解除：{detail}" },
  "route.computing": { en: "Computing the route from where they are now…", "zh-CN": "正在计算其当前位置出发的路线……" },
  "route.refused": { en: "No route from where {person} is now{status}: {detail}", "zh-CN": "无法从 {person} 当前位置规划路线{status}：{detail}" },
  "route.no_safe": { en: "No safe route: {why}", "zh-CN": "无安全路线：{why}" },
  "route.no_muster": { en: "no muster point can be reached", "zh-CN": "无法到达任何集合点" },
  "route.to": { en: "to {muster}, {time} on foot{metres}", "zh-CN": "至 {muster}，步行 {time}{metres}" },
  "route.metres": { en: " ({m} m)", "zh-CN": "（{m} 米）" },
  "route.inside": { en: "Inside the innermost zone: the route leaves it first.", "zh-CN": "位于最内层威胁区：路线先撤出该区。" },

  // the activation panel's static text (index.html)
  "activate.title": { en: "Activate a plan", "zh-CN": "启动应急预案" },
  "activate.plan": { en: "Plan", "zh-CN": "预案" },
  "activate.level": { en: "Response level", "zh-CN": "响应级别" },
  "activate.location": { en: "Location", "zh-CN": "事发位置" },
  "activate.hazard": { en: "Hazard", "zh-CN": "危害" },
  "activate.model": { en: "Model", "zh-CN": "模型" },
  "activate.capacity": { en: "Plan departures within corridor and muster capacities", "zh-CN": "按通道和集合点容量安排分批撤离" },
  "activate.submit": { en: "Activate", "zh-CN": "启动" },
  "model.plan": { en: "Design release (from the plan)", "zh-CN": "设计泄漏场景（取自预案）" },
  "model.toxic_release": { en: "Toxic gas release (plume)", "zh-CN": "有毒气体泄漏（烟羽扩散）" },
  "model.pool_fire": { en: "Pool fire (thermal radiation)", "zh-CN": "池火（热辐射）" },
  "model.explosion": { en: "Explosion (overpressure)", "zh-CN": "爆炸（超压）" },
  "model.radius": { en: "Fixed radii", "zh-CN": "固定半径" },
  "model.erg": { en: "ERG protective action distances", "zh-CN": "ERG 防护行动距离" },

  // -- actions.js (steps, the activation panel, proposals) ------------------------------------
  // (keys of actions.js go here)
  // the answer page of a call-out (answer.html: the person called, on their phone)
  "answer.title": { en: "Rallypoint — Answer the call-out", "zh-CN": "Rallypoint — 应答应急通知" },
  "answer.ask": {
    en: "You were called by the emergency call tree. Confirm that you got the call, and your fallback is not called.",
    "zh-CN": "您已收到应急通知。请点击确认收到，系统将不再呼叫您的备用联系人。",
  },
  "answer.confirm": { en: "I got the call", "zh-CN": "确认收到" },
  "answer.incomplete": { en: "The link is incomplete: open the whole link of the message.", "zh-CN": "链接不完整：请打开短信中的完整链接。" },
  "answer.sending": { en: "Sending…", "zh-CN": "正在发送……" },
  "answer.confirmed": { en: "Confirmed: thank you. ({time})", "zh-CN": "已确认，谢谢。（{time}）" },
  "answer.refused": { en: "Not confirmed: {detail}", "zh-CN": "未能确认：{detail}" },
  "answer.offline": { en: "No connection: try again.", "zh-CN": "网络连接失败，请重试。" },
  // steps: the moves' buttons and what they ask first
  "stepact.acknowledge": { en: "Acknowledge", "zh-CN": "确认接收" },
  "stepact.start": { en: "Start", "zh-CN": "开始执行" },
  "stepact.complete": { en: "Complete", "zh-CN": "完成" },
  "stepact.skip": { en: "Skip", "zh-CN": "跳过" },
  "stepact.fail": { en: "Fail", "zh-CN": "标记失败" },
  "stepact.confirm_complete": { en: "Complete", "zh-CN": "确认完成" },
  "stepact.confirm_skip": { en: "Skip step", "zh-CN": "跳过此步骤" },
  "stepact.confirm_fail": { en: "Fail step", "zh-CN": "标记此步骤失败" },
  "stepact.title": { en: "{action} step {step}", "zh-CN": "{action}：步骤 {step}" },
  "stepact.asks": { en: "{action}…", "zh-CN": "{action}…" },
  "stepact.cancel": { en: "Cancel", "zh-CN": "取消" },
  "stepact.why_skip": { en: "Why skip?", "zh-CN": "跳过原因：" },
  "stepact.why_fail": { en: "Why did it fail?", "zh-CN": "失败原因：" },
  "stepact.value": { en: "value", "zh-CN": "数值" },
  "stepact.with_unit": { en: "{name} ({unit})", "zh-CN": "{name}（{unit}）" },
  "stepact.reference": { en: "Reference", "zh-CN": "记录编号" },
  "stepact.reference_named": { en: "Reference ({name})", "zh-CN": "记录编号（{name}）" },
  "stepact.reference_example": { en: "e.g. call log no.", "zh-CN": "如：通话记录编号" },
  "stepact.refused": { en: "{action} refused: {detail}", "zh-CN": "{action}被拒绝：{detail}" },
  // the activation panel
  "act.click_map": { en: "Click the map where it happens.", "zh-CN": "请在地图上点击事发位置。" },
  "act.location": { en: "lat {lat}, lon {lon}", "zh-CN": "纬度 {lat}，经度 {lon}" },
  "act.pick": { en: "Where the plan is activated", "zh-CN": "预案启动位置" },
  "act.plans_failed": { en: "Cannot list the plans: {detail}", "zh-CN": "无法列出预案：{detail}" },
  "act.no_plans": { en: "The site has no plan yet.", "zh-CN": "本厂区尚无应急预案。" },
  "act.plan_option": { en: "{title} ({id})", "zh-CN": "{title}（{id}）" },
  "act.unknown_plan": { en: "Plan {plan} is not among the site's plans.", "zh-CN": "预案 {plan} 不在本厂区的预案之列。" },
  "act.unknown_plan_reason": { en: "plan {plan} is not among the site's plans", "zh-CN": "预案 {plan} 不在本厂区的预案之列" },
  "act.field.substance": { en: "Substance", "zh-CN": "物质名称" },
  "act.field.rate_g_s": { en: "Release rate (g/s)", "zh-CN": "泄漏速率（g/s）" },
  "act.field.wind_speed_m_s": { en: "Wind speed (m/s)", "zh-CN": "风速（m/s）" },
  "act.field.wind_from_deg": { en: "Wind from (degrees)", "zh-CN": "风向（来风方向，°）" },
  "act.field.release_height_m": { en: "Release height (m)", "zh-CN": "泄漏高度（m）" },
  "act.field.daytime": { en: "Daytime", "zh-CN": "白天" },
  "act.field.insolation": { en: "Sunshine (by day)", "zh-CN": "日照强度（白天）" },
  "act.field.cloud_cover_octas": { en: "Cloud cover at night (octas; 0 clear: longest plume)", "zh-CN": "夜间云量（八分制；0 为晴空：烟羽最长）" },
  "act.field.fuel": { en: "Fuel", "zh-CN": "燃料" },
  "act.field.diameter_m": { en: "Pool diameter (m)", "zh-CN": "液池直径（m）" },
  "act.field.mass_kg": { en: "Mass in the cloud (kg)", "zh-CN": "蒸气云中可燃物质量（kg）" },
  "act.field.tnt_kg": { en: "Or TNT equivalent (kg)", "zh-CN": "或 TNT 当量（kg）" },
  "act.field.radii_m": { en: "Radii, innermost first (m)", "zh-CN": "半径（m，由内向外）" },
  "act.field.spill": { en: "Spill", "zh-CN": "泄漏规模" },
  "act.placeholder.ground_level": { en: "0: at ground level", "zh-CN": "0：地面泄漏" },
  "act.option.strong": { en: "strong", "zh-CN": "强" },
  "act.option.moderate": { en: "moderate", "zh-CN": "中等" },
  "act.option.slight": { en: "slight", "zh-CN": "弱" },
  "act.option.small": { en: "small", "zh-CN": "少量泄漏" },
  "act.option.large": { en: "large", "zh-CN": "大量泄漏" },
  "act.list_separator": { en: ", ", "zh-CN": "、" },
  "act.wind_reported": { en: "from {station} at {time}{age}{stale}", "zh-CN": "来自 {station}，{time}{age}{stale}" },
  "act.wind_age": { en: ", {minutes} min ago", "zh-CN": "（{minutes} 分钟前）" },
  "act.wind_stale": { en: "; could not ask again: {detail}", "zh-CN": "；无法再次读取：{detail}" },
  "act.wind_reading": { en: "Reading {reported}.", "zh-CN": "气象站读数{reported}。" },
  "act.wind_typed_over": {
    en: "Typed: sent instead of the station's wind ({speed} m/s from {from}°, {reported}).",
    "zh-CN": "已手动输入：将代替气象站风况发送（气象站风速 {speed} m/s、风向 {from}°，{reported}）。",
  },
  "act.wind_none": { en: "No wind station has reported yet", "zh-CN": "尚无气象站报告风况" },
  "act.wind_unreadable": { en: "The wind stations' readings cannot be read ({detail})", "zh-CN": "无法读取气象站数据（{detail}）" },
  "act.wind_typed_only": { en: "Typed: no wind station has reported.", "zh-CN": "已手动输入：尚无气象站报告风况。" },
  "act.wind_type": { en: "{why}: type the wind.", "zh-CN": "{why}：请输入风速和风向。" },
  "act.wind_type_plan": { en: "{why}: type the wind, or the server will ask for it.", "zh-CN": "{why}：请输入风速和风向，否则服务器将要求补充。" },
  "act.required": { en: "required: nothing known fills it in, type the figure", "zh-CN": "必填：没有可预填的已知数据，请输入数值" },
  "act.required_wind": { en: "required: no wind station has reported, type the wind", "zh-CN": "必填：尚无气象站报告风况，请输入风速和风向" },
  "act.fill_marked": { en: "fill in the fields marked", "zh-CN": "请填写标出的栏目" },
  "act.not_activated": { en: "Not activated: {detail}", "zh-CN": "未启动：{detail}" },
  "act.activated": { en: "Activated {plan} at {level}: {incident}", "zh-CN": "已按 {level} 启动 {plan}：{incident}" },
  "act.used": { en: " ({hazard})", "zh-CN": "（{hazard}）" },
  // the plan's design release (设计泄漏场景)
  "design.option": { en: "Design release (from the plan)", "zh-CN": "设计泄漏场景（取自预案）" },
  "design.option_none": { en: "Design release (this plan gives none)", "zh-CN": "设计泄漏场景（本预案未给出）" },
  "design.none": { en: "This plan gives no design release: type the figures.", "zh-CN": "本预案未给出设计泄漏场景：请输入各项参数。" },
  "design.plan": { en: "The plan's design release: {what}.", "zh-CN": "预案设计泄漏场景：{what}。" },
  "design.plan_gas": {
    en: "The plan's design release: {what}, under the station's wind unless typed below; day or night by the site's clock.",
    "zh-CN": "预案设计泄漏场景：{what}；风速风向取气象站读数（下方手动输入的除外），昼夜按厂区时钟判定。",
  },
  "design.prefilled": { en: "Prefilled from the plan's design release ({what}).", "zh-CN": "已按预案设计泄漏场景预填（{what}）。" },
  "design.basis": { en: "Basis: {basis}", "zh-CN": "依据：{basis}" },
  "design.separator": { en: ", ", "zh-CN": "，" },
  "design.rate": { en: "{rate} g/s", "zh-CN": "泄漏速率 {rate} g/s" },
  "design.rate_of": { en: "{rate} g/s of {substance}", "zh-CN": "{substance} 泄漏速率 {rate} g/s" },
  "design.height": { en: "from {height} m", "zh-CN": "泄漏高度 {height} m" },
  "design.fuel": { en: "a pool fire of {fuel}", "zh-CN": "{fuel} 池火" },
  "design.diameter": { en: "{diameter} m across", "zh-CN": "直径 {diameter} m" },
  "design.mass": { en: "{mass} kg in the cloud", "zh-CN": "蒸气云 {mass} kg" },
  "design.mass_of": { en: "{mass} kg of {substance} in the cloud", "zh-CN": "蒸气云中 {substance} {mass} kg" },
  "design.radii": { en: "radii {radii} m", "zh-CN": "半径 {radii} m" },
  // the hazard an incident was activated with, in a few words
  "hazard.wind": { en: "wind {speed} m/s from {deg}°", "zh-CN": "风速 {speed} m/s，风向 {deg}°" },
  "hazard.wind_from": { en: "wind from {deg}°", "zh-CN": "风向 {deg}°" },
  "hazard.toxic_release": { en: "{rate} g/s of {substance}, {wind}", "zh-CN": "{substance} 泄漏速率 {rate} g/s，{wind}" },
  "hazard.pool_fire": { en: "pool fire of {fuel}, {diameter} m", "zh-CN": "{fuel} 池火，直径 {diameter} m" },
  "hazard.explosion": { en: "{mass} kg of {substance}", "zh-CN": "{substance} {mass} kg" },
  "hazard.explosion_tnt": { en: "{tnt} kg TNT", "zh-CN": "TNT 当量 {tnt} kg" },
  "hazard.radius": { en: "radii {radii} m", "zh-CN": "半径 {radii} m" },
  "hazard.erg": { en: "ERG, {spill} spill of {substance}, {wind}", "zh-CN": "ERG：{substance} {spill}，{wind}" },

  // -- drills on the wall: the exercise banner (banner.js), the controller's console
  // (drill-console.js), replays (replay.js)
  "exercise.label": { en: "EXERCISE / 演练", "zh-CN": "EXERCISE / 演练" },
  "exercise.proposal": { en: "In a real alarm the wall would propose: {plans}. In the drill, act on the drill's incident.", "zh-CN": "真实报警时将建议启动：{plans}。演练中请处置演练事件。" },
  "exercise.region": { en: "Exercise", "zh-CN": "演练" },
  "exercise.running": { en: "A drill: not a real emergency", "zh-CN": "应急演练，非真实事件" },
  "exercise.held": { en: "Drill held by the controller", "zh-CN": "演练已由导调人员暂停" },
  "exercise.suspended": { en: "Drill SUSPENDED: a real incident comes first", "zh-CN": "演练已中止：真实事件优先" },
  "exercise.suspended_incident": { en: "Drill SUSPENDED: the real incident {plan} comes first", "zh-CN": "演练已中止：真实事件“{plan}”优先" },
  "exercise.suspended_alarm": { en: "Drill SUSPENDED: a real alarm at {sensor} comes first", "zh-CN": "演练已中止：{sensor} 真实报警优先" },
  "exercise.ended": { en: "Drill ended", "zh-CN": "演练已结束" },
  "exercise.aborted": { en: "Drill aborted", "zh-CN": "演练已终止" },
  "exercise.real_label": { en: "REAL INCIDENT", "zh-CN": "真实事件" },
  "exercise.real_first": { en: "The exercise “{title}” is suspended: this real incident comes first.", "zh-CN": "演练“{title}”已中止：本真实事件优先处置。" },
  "exercise.real_also": { en: "The exercise “{title}” is also on this wall; this incident is real.", "zh-CN": "本屏同时显示演练“{title}”；当前事件为真实事件。" },
  "console.title": { en: "Drill control", "zh-CN": "演练导调" },
  "console.drills": { en: "Drills", "zh-CN": "演练列表" },
  "console.no_drills": { en: "No drill at this site yet.", "zh-CN": "本厂区尚无演练。" },
  "console.no_live": { en: "No drill is running.", "zh-CN": "当前没有进行中的演练。" },
  "console.unreadable": { en: "Cannot read the drills: {detail}", "zh-CN": "无法读取演练：{detail}" },
  "console.blind": { en: "blind", "zh-CN": "双盲" },
  "console.announced": { en: "announced", "zh-CN": "预告" },
  "console.state.scheduled": { en: "scheduled", "zh-CN": "已排期" },
  "console.state.starting": { en: "starting", "zh-CN": "启动中" },
  "console.state.running": { en: "running", "zh-CN": "进行中" },
  "console.state.held": { en: "held", "zh-CN": "已暂停" },
  "console.state.suspended": { en: "SUSPENDED", "zh-CN": "已中止" },
  "console.state.ended": { en: "ended", "zh-CN": "已结束" },
  "console.state.aborted": { en: "aborted", "zh-CN": "已终止" },
  "console.state.cancelled": { en: "cancelled", "zh-CN": "已取消" },
  "console.state.unknown": { en: "unknown", "zh-CN": "未知" },
  "console.show": { en: "Show", "zh-CN": "查看" },
  "console.review_open": { en: "review open", "zh-CN": "复盘待签批" },
  "console.review_signed": { en: "review signed off", "zh-CN": "复盘已签批" },
  "console.review_overdue": { en: "review OVERDUE: not signed off 72 h after the end", "zh-CN": "复盘逾期：结束后72小时仍未签批" },
  "console.window": { en: "window {start} to {end}", "zh-CN": "时间窗 {start} 至 {end}" },
  "console.window_not": { en: "(not {ranges})", "zh-CN": "（避开 {ranges}）" },
  "console.separator": { en: ", ", "zh-CN": "、" },
  "console.ran": { en: "ran {start} to {end}", "zh-CN": "{start} 至 {end}" },
  "console.started": { en: "started {start}", "zh-CN": "开始于 {start}" },
  "console.created": { en: "scheduled {time}", "zh-CN": "排期于 {time}" },
  "console.t": { en: "T+{time}", "zh-CN": "T+{time}" },
  "console.suspended_by": { en: "Suspended: {reason}", "zh-CN": "中止原因：{reason}" },
  "console.fire": { en: "Fire now: {inject}", "zh-CN": "立即注入：{inject}" },
  "console.fire_none": { en: "No timed inject left", "zh-CN": "无剩余定时注入" },
  "console.fire_title": { en: "Fire the next timed inject now, before its time", "zh-CN": "提前注入下一条定时情景" },
  "console.hold": { en: "Hold", "zh-CN": "暂停" },
  "console.resume": { en: "Resume", "zh-CN": "继续" },
  "console.end": { en: "End drill…", "zh-CN": "结束演练……" },
  "console.abort": { en: "Abort…", "zh-CN": "终止演练……" },
  "console.confirm_end": { en: "End the drill? Its incident stands down and the review is made.", "zh-CN": "确认结束演练？演练事件将解除，并生成复盘报告。" },
  "console.confirm_abort": { en: "Abort the drill now? Its incident stands down at once.", "zh-CN": "确认立即终止演练？演练事件将立即解除。" },
  "console.end_yes": { en: "End the drill", "zh-CN": "结束演练" },
  "console.abort_yes": { en: "Abort the drill", "zh-CN": "终止演练" },
  "console.reason": { en: "Reason (logged)", "zh-CN": "原因（将记录）" },
  "console.cancel": { en: "Cancel", "zh-CN": "取消" },
  "console.refused": { en: "Refused: {detail}", "zh-CN": "被拒绝：{detail}" },
  "console.done_fire": { en: "Inject fired.", "zh-CN": "已注入。" },
  "console.done_hold": { en: "Drill held: drill time stopped.", "zh-CN": "演练已暂停，演练计时停止。" },
  "console.done_resume": { en: "Drill resumed.", "zh-CN": "演练已继续。" },
  "console.done_end": { en: "Drill ended.", "zh-CN": "演练已结束。" },
  "console.done_abort": { en: "Drill aborted.", "zh-CN": "演练已终止。" },
  "console.timeline": { en: "Scenario timeline", "zh-CN": "情景时间线" },
  "console.contingency": { en: "if missed", "zh-CN": "条件触发" },
  "console.fired": { en: "fired", "zh-CN": "已注入" },
  "console.fired_at": { en: "fired at {time}", "zh-CN": "{time} 已注入" },
  "console.early": { en: "early", "zh-CN": "提前" },
  "console.contingency_for": { en: "because missed: {action}", "zh-CN": "因未完成：{action}" },
  "console.inject_refused": { en: "not applied: {detail}", "zh-CN": "未生效：{detail}" },
  "console.if_missed": { en: "fires if an expected action is missed", "zh-CN": "预期行动超时未完成时触发" },
  "console.due_in": { en: "due in {time}", "zh-CN": "{time}后注入" },
  "console.no_injects": { en: "The scenario has no inject.", "zh-CN": "情景无注入。" },
  "console.expected": { en: "Expected actions", "zh-CN": "预期行动" },
  "console.target": { en: "target {target}, deadline {deadline}", "zh-CN": "目标 {target}，时限 {deadline}" },
  "console.actual": { en: "done {time} by {by}: {deviation}", "zh-CN": "{by} 于 {time} 完成：{deviation}" },
  "console.met": { en: "done (event {seq})", "zh-CN": "已完成（事件 {seq}）" },
  "console.missed": { en: "MISSED: not done by {deadline}", "zh-CN": "未完成：{deadline} 前未执行" },
  "console.target_passed": { en: "not yet: target passed {duration} ago", "zh-CN": "尚未完成：已超过目标 {duration}" },
  "console.target_in": { en: "target in {duration}", "zh-CN": "距目标 {duration}" },
  "console.on_time": { en: "on time", "zh-CN": "准时" },
  "console.late_by": { en: "{duration} late", "zh-CN": "晚 {duration}" },
  "console.early_by": { en: "{duration} early", "zh-CN": "早 {duration}" },
  "console.no_expected": { en: "The scenario expects no action.", "zh-CN": "情景无预期行动。" },
  "console.notes": { en: "Evaluator notes", "zh-CN": "评估记录" },
  "console.note_label": { en: "Note (stamped with drill time)", "zh-CN": "记录（附演练时间）" },
  "console.add_note": { en: "Add note", "zh-CN": "添加记录" },
  "console.note_added": { en: "Note logged.", "zh-CN": "记录已保存。" },
  "console.note_empty": { en: "Write the note first.", "zh-CN": "请先填写记录内容。" },
  "console.no_notes": { en: "No note yet.", "zh-CN": "尚无记录。" },
  "bar.replays": { en: "Replays", "zh-CN": "回放" },
  "replay.title": { en: "Replay a finished incident", "zh-CN": "回放已结束的事件" },
  "replay.close": { en: "Close", "zh-CN": "关闭" },
  "replay.listing": { en: "Reading the finished incidents…", "zh-CN": "正在读取已结束的事件……" },
  "replay.none": { en: "No finished incident to replay.", "zh-CN": "没有可回放的已结束事件。" },
  "replay.what": { en: "{plan}, {time} ({incident})", "zh-CN": "{plan}，{time}（{incident}）" },
  "replay.when": { en: "{start} to {end}, stood down by {by}", "zh-CN": "{start} 至 {end}，由 {by} 解除" },
  "replay.start": { en: "Replay", "zh-CN": "回放" },
  "replay.loading": { en: "Loading the replay…", "zh-CN": "正在加载回放……" },
  "replay.refused": { en: "Cannot replay: {detail}", "zh-CN": "无法回放：{detail}" },
  "replay.real_first": { en: "Not replayed: a real incident was activated.", "zh-CN": "未回放：有真实事件启动。" },
  "replay.region": { en: "Replay", "zh-CN": "回放" },
  "replay.label": { en: "REPLAY · not live", "zh-CN": "回放 · 非实时" },
  "replay.play": { en: "Play", "zh-CN": "播放" },
  "replay.pause": { en: "Pause", "zh-CN": "暂停" },
  "replay.again": { en: "Play again", "zh-CN": "重新播放" },
  "replay.speed": { en: "Speed", "zh-CN": "速度" },
  "replay.slider": { en: "Time in the replay", "zh-CN": "回放时间" },
  "replay.time": { en: "{clock} · {elapsed} of {length}", "zh-CN": "{clock} · {elapsed} / {length}" },
  "replay.exit": { en: "Back to live", "zh-CN": "返回实时" },
};

// Where the language was chosen: remembered across visits; else the browser's first preference
// that the table speaks; else English.
function initialLanguage() {
  try {
    const remembered = localStorage.getItem(LANGUAGE_KEY);
    if (LANGUAGES.includes(remembered)) return remembered;
  } catch {
    // storage refused (a locked-down kiosk): the browser's choice
  }
  for (const wanted of navigator.languages || [navigator.language]) {
    if (String(wanted).toLowerCase().startsWith("zh")) return "zh-CN";
    if (String(wanted).toLowerCase().startsWith("en")) return "en";
  }
  return FALLBACK;
}

let language = initialLanguage();

// The language the wall speaks now (one of LANGUAGES), remembered; the page's static text is
// written again and a "rp-language" event tells the wall to repaint what it drew.
export function setLanguage(code) {
  if (!LANGUAGES.includes(code)) throw new Error(`unknown language ${code}`);
  language = code;
  try {
    localStorage.setItem(LANGUAGE_KEY, code);
  } catch {
    // not remembered; still switched
  }
  translatePage();
  document.dispatchEvent(new CustomEvent("rp-language", { detail: code }));
}

export function currentLanguage() {
  return language;
}

export function isChinese() {
  return language === "zh-CN";
}

// The text for `key` in the current language, with each {name} replaced by params[name]. An
// unknown key is a bug in the page: it throws (and the browser tests fail on it).
export function t(key, params = {}) {
  const entry = MESSAGES[key];
  if (!entry) throw new Error(`no message ${key}`);
  const template = entry[language] ?? entry[FALLBACK];
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// A plan's own text in the wall's language: `field_zh` in Chinese when the plan gives it.
export function localized(object, field) {
  if (!object) return "";
  if (language === "zh-CN" && object[`${field}_zh`]) return object[`${field}_zh`];
  return object[field] ?? "";
}

// The page's static text: data-i18n (text), data-i18n-title (tooltip), data-i18n-aria (label).
export function translatePage(root = document) {
  document.documentElement.lang = language;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  for (const node of root.querySelectorAll("[data-i18n-aria]")) node.setAttribute("aria-label", t(node.dataset.i18nAria));
}
